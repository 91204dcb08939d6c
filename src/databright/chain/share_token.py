"""Typed wrapper over one dataset's ShareToken (ERC-20 + vote snapshots + dividends).

Names follow the contract: ERC-20 functions keep their camelCase (``balanceOf``,
``totalSupply``), DataBright's own are snake_case. Transactions take the signer first and return
:class:`~databright.chain.wrapper.Sent`.
"""

from __future__ import annotations

from eth_account.signers.local import LocalAccount

from databright.chain.wrapper import BoundContract, Sent, checksum


class ShareToken(BoundContract):
    """The ShareToken at ``address`` on ``chain``."""

    contract_name = "ShareToken"

    # -- ERC-20 ---------------------------------------------------------------------------------
    def name(self) -> str:
        return str(self._call("name"))

    def symbol(self) -> str:
        return str(self._call("symbol"))

    def decimals(self) -> int:
        return int(self._call("decimals"))

    def totalSupply(self) -> int:
        return int(self._call("totalSupply"))

    def balanceOf(self, account: str) -> int:
        return int(self._call("balanceOf", checksum(account)))

    def allowance(self, owner: str, spender: str) -> int:
        return int(self._call("allowance", checksum(owner), checksum(spender)))

    def transfer(self, sender: LocalAccount, to: str, amount: int) -> Sent[bool]:
        """Move ``amount`` shares (18 decimals) from the sender to ``to``."""
        receipt = self._send("transfer", sender, checksum(to), int(amount))
        return Sent(True, receipt)

    def transferFrom(self, sender: LocalAccount, owner: str, to: str, amount: int) -> Sent[bool]:
        """Move ``amount`` of ``owner``'s shares to ``to`` under the sender's allowance."""
        receipt = self._send("transferFrom", sender, checksum(owner), checksum(to), int(amount))
        return Sent(True, receipt)

    def approve(self, sender: LocalAccount, spender: str, amount: int) -> Sent[bool]:
        """Let ``spender`` move up to ``amount`` of the sender's shares."""
        receipt = self._send("approve", sender, checksum(spender), int(amount))
        return Sent(True, receipt)

    # -- vote snapshots -------------------------------------------------------------------------
    def balance_at(self, account: str, block: int) -> int:
        """``account``'s balance at the end of ``block`` (which must be final)."""
        return int(self._call("balance_at", checksum(account), int(block)))

    def total_supply_at(self, block: int) -> int:
        """The supply at the end of ``block`` (which must be final)."""
        return int(self._call("total_supply_at", int(block)))

    # -- dividends ------------------------------------------------------------------------------
    def distribute(self, sender: LocalAccount, value: int) -> Sent[int]:
        """Pay ``value`` wei to all current holders pro rata; value: the amount distributed."""
        receipt = self._send("distribute", sender, value=int(value))
        return Sent(int(self._event(receipt, "DividendsDistributed")["amount"]), receipt)

    def dividends_of(self, account: str) -> int:
        """Wei ``account`` can withdraw now."""
        return int(self._call("dividends_of", checksum(account)))

    def withdrawn_of(self, account: str) -> int:
        """Wei ``account`` has withdrawn so far."""
        return int(self._call("withdrawn_of", checksum(account)))

    def withdraw(self, sender: LocalAccount) -> Sent[int]:
        """Pull everything the sender can withdraw; value: wei paid."""
        receipt = self._send("withdraw", sender)
        return Sent(int(self._event(receipt, "DividendsWithdrawn")["amount"]), receipt)

    def total_distributed(self) -> int:
        return int(self._call("total_distributed"))

    def total_withdrawn(self) -> int:
        return int(self._call("total_withdrawn"))

    def per_share(self) -> int:
        """The running per-share dividend total, magnified by 2**32."""
        return int(self._call("per_share"))

    def carried(self) -> int:
        """Wei received but not yet spread over the shares (joins the next distribution)."""
        return int(self._call("carried"))

    def last_snapshot(self) -> int:
        """The latest vote snapshot block (0 if none)."""
        return int(self._call("last_snapshot"))
