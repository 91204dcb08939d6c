"""What each holder has withdrawn of each dividend source (chain-derived, rebuilt with the cache).

A ShareToken's ``withdraw`` pays everything the holder has earned so far, so at each
``DividendsWithdrawn`` the holder's withdrawn wei of a source becomes that source's ``settled``
wei in ``holder_dividends`` (just settled by the same event). The dividends waiting from a
source are then its earnings since: they add up, over the sources, to what the token says the
holder can withdraw (``dividends_of``), to the wei.
"""

from __future__ import annotations

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from databright.index.cache import Uint
from databright.index.models import Base


class HolderSourceWithdrawnRow(Base):
    """(dataset, holder, source): the wei of that source the holder has withdrawn."""

    __tablename__ = "holder_dividends_withdrawn"

    dataset_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[str] = mapped_column(String(42), primary_key=True)
    source: Mapped[str] = mapped_column(String(24), primary_key=True)
    withdrawn: Mapped[int] = mapped_column(Uint, default=0)
