"""What the ModelRegistry and the ComputeMarket wrappers share: both read dataset terms from
the DataMarket, forward fees to a dataset's ShareToken (holding what it refuses until
``release_held``), credit everyone else for a pull ``withdraw``, and sign EIP-712 messages
bound to the chain id."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount

from databright.chain.wrapper import BoundContract, Sent, checksum


class PullPayments(BoundContract):
    """Pull payments, held dividends and the terms contract of a market-side contract."""

    def chain_id(self) -> int:
        with self.chain.translating():
            return int(self.chain.w3.eth.chain_id)

    def withdraw(self, sender: LocalAccount) -> Sent[int]:
        """Pull what the contract credits ``sender``; value: the wei paid."""
        receipt = self._send("withdraw", sender)
        return Sent(int(self._event(receipt, "Withdrawn")["amount"]), receipt)

    def release_held(self, sender: LocalAccount, dataset_id: int) -> Sent[int]:
        """Pay a dataset's held dividends to its ShareToken (anyone may); value: the wei."""
        receipt = self._send("release_held", sender, int(dataset_id))
        return Sent(int(self._event(receipt, "HeldReleased")["amount"]), receipt)

    def data_terms(self) -> str:
        """The contract dataset terms are read from (the DataMarket)."""
        return checksum(self._call("data_terms"))

    def owed_of(self, account: str) -> int:
        """Wei ``account`` can pull with ``withdraw``."""
        return int(self._call("owed_of", checksum(account)))

    def held_of(self, dataset_id: int) -> int:
        """Dividends the dataset's ShareToken refused, waiting for ``release_held``."""
        return int(self._call("held_of", int(dataset_id)))
