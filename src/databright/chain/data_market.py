"""Typed wrapper over the DataMarket contract, following ``docs/contracts-abi.md`` name for name.

Transactions take the signer first (``sender``), return :class:`~databright.chain.wrapper.Sent`
(``value, receipt``), and raise :class:`~databright.errors.ContractRevert` subclasses picked by
``databright.chain.reverts``. Views return frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from eth_abi import encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from databright.chain.wrapper import ZERO_ADDRESS, BoundContract, Sent, as_bytes32, checksum

STATUS = {0: "none", 1: "open", 2: "accepted", 3: "rejected", 4: "expired"}


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset as ``get_dataset`` returns it, plus its id."""

    dataset_id: int
    name: str
    symbol: str
    card_cid: str
    initiator: str
    share_token: str
    quorum_bps: int
    approval_bps: int
    voting_period: int
    stake: int
    reward_r0: int
    reward_n0: int
    evaluator: str
    item_count: int
    entry_count: int
    pending_items: int
    training_fee: int
    min_royalty_bps: int


@dataclass(frozen=True)
class ProposalInfo:
    """A proposal as ``get_proposal`` returns it; ``status`` is ``open|accepted|rejected|expired``.

    ``snapshot`` is the block of the proposer's commitment (before the proposal's own block);
    ``position`` is how many items were accepted or pending in the dataset when it was made,
    the place its batch is priced at.
    """

    proposal_id: int
    dataset_id: int
    proposer: str
    manifest_cid: str
    merkle_root: bytes
    item_count: int
    stake: int
    snapshot: int
    snapshot_supply: int
    deadline: int
    yes: int
    no: int
    score_bps: int
    scored: bool
    status: str
    shares_minted: int
    position: int


@dataclass(frozen=True)
class EntryInfo:
    """One immutable registry entry of a dataset (entry 0 is the seed)."""

    dataset_id: int
    index: int
    manifest_cid: str
    merkle_root: bytes
    item_count: int
    contributor: str
    proposal_id: int
    shares_minted: int
    first_item: int


class VoteInfo(NamedTuple):
    """``vote_of``: whether the account voted, how, and with what weight."""

    voted: bool
    support: bool
    weight: int


class CommitInfo(NamedTuple):
    """``commit_of``: an unconsumed commitment's block, timestamp and dataset (all 0 if none)."""

    block: int
    timestamp: int
    dataset_id: int


ROOT_STATE = {0: "free", 1: "pending", 2: "registered"}


def commitment_of(
    proposer: str, dataset_id: int, manifest_cid: str, merkle_root: bytes | str, item_count: int
) -> bytes:
    """The commitment ``commit`` takes for a batch, computed locally (as ``commitment_of``).

    ``keccak256(abi_encode(proposer, dataset_id, merkle_root, keccak256(manifest_cid),
    item_count))``: bound to the proposer, so nobody else can reveal it.
    """
    return keccak(
        encode(
            ["address", "uint256", "bytes32", "bytes32", "uint256"],
            [
                checksum(proposer),
                int(dataset_id),
                as_bytes32(merkle_root),
                keccak(manifest_cid.encode()),
                int(item_count),
            ],
        )
    )


def _fields(raw: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """Struct returns decode as tuples in ABI order."""
    return dict(zip(names, raw, strict=True))


_DATASET = tuple(f for f in DatasetInfo.__dataclass_fields__ if f != "dataset_id")
_PROPOSAL = tuple(f for f in ProposalInfo.__dataclass_fields__ if f != "proposal_id")
_ENTRY = tuple(f for f in EntryInfo.__dataclass_fields__ if f not in ("dataset_id", "index"))


class DataMarket(BoundContract):
    """The DataMarket at ``address`` on ``chain``."""

    contract_name = "DataMarket"

    # -- transactions ---------------------------------------------------------------------------
    def create_dataset(
        self,
        sender: LocalAccount,
        *,
        name: str,
        symbol: str,
        card_cid: str,
        seed_cid: str,
        seed_root: bytes | str,
        seed_count: int,
        quorum_bps: int,
        approval_bps: int,
        voting_period: int,
        stake: int,
        reward_r0: int,
        reward_n0: int,
        evaluator: str = ZERO_ADDRESS,
        training_fee: int = 0,
        min_royalty_bps: int = 0,
    ) -> Sent[int]:
        """Create a dataset (deploys its ShareToken, records the seed); value: the new id.

        ``training_fee`` (wei) is what a model registry pays the shareholders for each model and
        checkpoint trained on the dataset; ``min_royalty_bps`` the floor of a model's royalty.
        """
        receipt = self._send(
            "create_dataset",
            sender,
            name,
            symbol,
            card_cid,
            seed_cid,
            as_bytes32(seed_root),
            int(seed_count),
            int(quorum_bps),
            int(approval_bps),
            int(voting_period),
            int(stake),
            int(reward_r0),
            int(reward_n0),
            checksum(evaluator),
            int(training_fee),
            int(min_royalty_bps),
        )
        return Sent(int(self._event(receipt, "DatasetCreated")["dataset_id"]), receipt)

    def commit(self, sender: LocalAccount, dataset_id: int, commitment: bytes | str) -> Sent[int]:
        """Commit to a batch (first step of a proposal); value: the snapshot block."""
        receipt = self._send("commit", sender, int(dataset_id), as_bytes32(commitment))
        return Sent(int(self._event(receipt, "ProposalCommitted")["snapshot"]), receipt)

    def propose(
        self,
        sender: LocalAccount,
        dataset_id: int,
        manifest_cid: str,
        merkle_root: bytes | str,
        item_count: int,
        value: int | None = None,
    ) -> Sent[int]:
        """Propose a batch, staking ``value`` (default: the dataset's stake); value: the new id.

        Does both steps: ``commit`` (mined first, so the reveal lands in a later block), then
        :meth:`reveal`. The receipt is the reveal's.
        """
        commitment = commitment_of(
            sender.address, dataset_id, manifest_cid, merkle_root, item_count
        )
        self.commit(sender, dataset_id, commitment)
        return self.reveal(sender, dataset_id, manifest_cid, merkle_root, item_count, value)

    def reveal(
        self,
        sender: LocalAccount,
        dataset_id: int,
        manifest_cid: str,
        merkle_root: bytes | str,
        item_count: int,
        value: int | None = None,
    ) -> Sent[int]:
        """The contract's ``propose``: reveal a batch committed earlier; value: the new id."""
        stake = self.get_dataset(dataset_id).stake if value is None else int(value)
        receipt = self._send(
            "propose",
            sender,
            int(dataset_id),
            manifest_cid,
            as_bytes32(merkle_root),
            int(item_count),
            value=stake,
        )
        return Sent(int(self._event(receipt, "ProposalCreated")["proposal_id"]), receipt)

    def vote(self, sender: LocalAccount, proposal_id: int, support: bool) -> Sent[int]:
        """Vote yes (``support``) or no with the sender's snapshot shares; value: the weight."""
        receipt = self._send("vote", sender, int(proposal_id), bool(support))
        return Sent(int(self._event(receipt, "Voted")["weight"]), receipt)

    def post_score(self, sender: LocalAccount, proposal_id: int, score_bps: int) -> Sent[int]:
        """The evaluator posts a score in basis points (0..20000); value: the score."""
        receipt = self._send("post_score", sender, int(proposal_id), int(score_bps))
        return Sent(int(self._event(receipt, "ScorePosted")["score_bps"]), receipt)

    def finalize(self, sender: LocalAccount, proposal_id: int) -> Sent[str]:
        """Decide a proposal; value: the new status (``accepted|rejected|expired``)."""
        receipt = self._send("finalize", sender, int(proposal_id))
        status = int(self._event(receipt, "ProposalFinalized")["status"])
        return Sent(STATUS.get(status, str(status)), receipt)

    def withdraw_refund(self, sender: LocalAccount) -> Sent[int]:
        """Pull the sender's refunded stakes; value: wei paid out."""
        receipt = self._send("withdraw_refund", sender)
        return Sent(int(self._event(receipt, "RefundWithdrawn")["amount"]), receipt)

    def release_dividends(self, sender: LocalAccount, dataset_id: int) -> Sent[int]:
        """Distribute a dataset's held rejected stakes to its holders; value: wei paid in."""
        receipt = self._send("release_dividends", sender, int(dataset_id))
        return Sent(int(self._event(receipt, "DividendsReleased")["amount"]), receipt)

    # -- views ----------------------------------------------------------------------------------
    def dataset_count(self) -> int:
        return int(self._call("dataset_count"))

    def proposal_count(self) -> int:
        return int(self._call("proposal_count"))

    def dataset_id_of(self, name: str) -> int:
        """The id of the dataset called ``name``, 0 if none."""
        return int(self._call("dataset_id_of", name))

    def get_dataset(self, dataset_id: int) -> DatasetInfo:
        """Raises :class:`~databright.errors.ContractNotFoundError` for an unknown id."""
        raw = _fields(self._call("get_dataset", int(dataset_id)), _DATASET)
        return DatasetInfo(dataset_id=int(dataset_id), **raw)

    def get_proposal(self, proposal_id: int) -> ProposalInfo:
        """Raises :class:`~databright.errors.ContractNotFoundError` for an unknown id."""
        raw = _fields(self._call("get_proposal", int(proposal_id)), _PROPOSAL)
        raw["merkle_root"] = bytes(raw["merkle_root"])
        raw["status"] = STATUS.get(int(raw["status"]), str(raw["status"]))
        return ProposalInfo(proposal_id=int(proposal_id), **raw)

    def get_entry(self, dataset_id: int, index: int) -> EntryInfo:
        """Raises :class:`~databright.errors.ContractNotFoundError` for an unknown entry."""
        raw = _fields(self._call("get_entry", int(dataset_id), int(index)), _ENTRY)
        raw["merkle_root"] = bytes(raw["merkle_root"])
        return EntryInfo(dataset_id=int(dataset_id), index=int(index), **raw)

    def has_voted(self, proposal_id: int, account: str) -> bool:
        return bool(self._call("has_voted", int(proposal_id), checksum(account)))

    def vote_of(self, proposal_id: int, account: str) -> VoteInfo:
        voted, support, weight = self._call("vote_of", int(proposal_id), checksum(account))
        return VoteInfo(bool(voted), bool(support), int(weight))

    def commit_of(self, account: str, commitment: bytes | str) -> CommitInfo:
        """``account``'s unconsumed commitment ``commitment`` (zeros if none)."""
        block, timestamp, ds = self._call("commit_of", checksum(account), as_bytes32(commitment))
        return CommitInfo(int(block), int(timestamp), int(ds))

    def root_state(self, dataset_id: int, merkle_root: bytes | str) -> str:
        """``free``, ``pending`` (in an open proposal) or ``registered`` (in the registry)."""
        state = int(self._call("root_state", int(dataset_id), as_bytes32(merkle_root)))
        return ROOT_STATE.get(state, str(state))

    def model_terms(self, dataset_id: int) -> tuple[str, str, int, int, int]:
        """``(share token, evaluator, training fee, royalty floor bps, entry count)`` as a model
        registry reads them; the zero share token for an unknown dataset."""
        token, evaluator, fee, floor, entries = self._call("model_terms", int(dataset_id))
        return str(token), str(evaluator), int(fee), int(floor), int(entries)

    def held_dividends(self, dataset_id: int) -> int:
        """Wei of rejected stakes the token could not take, waiting for ``release_dividends``."""
        return int(self._call("held_dividends", int(dataset_id)))

    def refund_of(self, account: str) -> int:
        """Wei of refunded stakes ``account`` can withdraw."""
        return int(self._call("refund_of", checksum(account)))

    def reward_for(self, dataset_id: int, item_count: int, score_bps: int = 10_000) -> int:
        """Shares a batch of ``item_count`` items proposed now would earn (after pending ones)."""
        return int(self._call("reward_for", int(dataset_id), int(item_count), int(score_bps)))

    def verify_item(
        self,
        dataset_id: int,
        entry: int,
        cid_digest: bytes | str,
        label: str,
        proof: list[bytes] | list[str],
    ) -> bool:
        """Whether ``(cid_digest, label)`` is a leaf of the entry's Merkle tree, by ``proof``."""
        return bool(
            self._call(
                "verify_item",
                int(dataset_id),
                int(entry),
                as_bytes32(cid_digest),
                label,
                [as_bytes32(p) for p in proof],
            )
        )
