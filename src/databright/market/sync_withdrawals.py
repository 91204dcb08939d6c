"""The sync's record of dividends withdrawn by source (``index/withdrawals.py``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from databright.index.cache import HolderDividendRow
from databright.index.withdrawals import HolderSourceWithdrawnRow


def record_withdrawal(s: Session, dataset_id: int, account: str) -> None:
    """After ``DividendsWithdrawn`` (the holder just settled): everything each source has paid
    the holder so far is withdrawn."""
    withdrawn = {r.source: r for r in s.execute(select(HolderSourceWithdrawnRow).where(
        HolderSourceWithdrawnRow.dataset_id == dataset_id,
        HolderSourceWithdrawnRow.account == account)).scalars()}
    for row in s.execute(select(HolderDividendRow).where(
            HolderDividendRow.dataset_id == dataset_id,
            HolderDividendRow.account == account)).scalars():
        mine = withdrawn.get(row.source)
        if mine is None:
            s.add(HolderSourceWithdrawnRow(dataset_id=dataset_id, account=account,
                                           source=row.source, withdrawn=row.settled))
        else:
            mine.withdrawn = row.settled
