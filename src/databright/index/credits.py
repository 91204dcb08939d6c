"""The ModelRegistry's credits in the chain-event cache: what it owes each account.

The registry pays by credit (pull payments): closing a channel credits the model owner its
payee amount and the payer the unspent deposit, a reclaim credits the payer the whole deposit
(event ``Credited``); ``withdraw`` pays an account everything credited and logs ``Withdrawn``.
``credited - withdrawn`` of a row is then the registry's ``owed_of(account)`` at the last
synced block. Rows are dropped and rebuilt by ``index rebuild`` like the rest of the cache.
"""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from databright.index.cache import Uint
from databright.index.models import Base


class RegistryAccountRow(Base):
    """Wei the ModelRegistry credited an account (prediction revenue of a model's owner,
    refunds of a channel's unspent or reclaimed deposit) and what it withdrew."""

    __tablename__ = "registry_accounts"

    account: Mapped[str] = mapped_column(String(42), primary_key=True)
    credited: Mapped[int] = mapped_column(Uint, default=0)
    withdrawn: Mapped[int] = mapped_column(Uint, default=0)

    @property
    def owed(self) -> int:
        """What the account can withdraw now (the registry's ``owed_of``)."""
        return self.credited - self.withdrawn
