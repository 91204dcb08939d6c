"""Fixtures for the contract tests: compiled once per session, deployed fresh per test (titanoboa)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boa
import pytest

CONTRACTS = Path(__file__).resolve().parents[2] / "src" / "databright" / "contracts"
ETHER = 10**18
ZERO = "0x" + "00" * 20
STAKE = ETHER // 100
PERIOD = 3600

OPEN, ACCEPTED, REJECTED, EXPIRED = 1, 2, 3, 4


@dataclass
class Deployers:
    """Compiled contracts, ready to deploy."""

    token: Any
    market: Any


_DEPLOYERS: Deployers | None = None


def deployers() -> Deployers:
    """Compile both contracts once per process."""
    global _DEPLOYERS
    if _DEPLOYERS is None:
        _DEPLOYERS = Deployers(
            token=boa.load_partial(str(CONTRACTS / "ShareToken.vy")),
            market=boa.load_partial(str(CONTRACTS / "DataMarket.vy")),
        )
    return _DEPLOYERS


def new_account(balance: int = 1000 * ETHER) -> str:
    """A fresh funded address."""
    account = boa.env.generate_address()
    boa.env.set_balance(account, balance)
    return account


def deploy_market() -> Any:
    """A DataMarket with a fresh ShareToken blueprint."""
    d = deployers()
    blueprint = d.token.deploy_as_blueprint()
    return d.market.deploy(blueprint)


def dataset_args(name: str = "digits", **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of create_dataset with small, valid defaults."""
    args: dict[str, Any] = {
        "name": name,
        "symbol": "DIG",
        "card_cid": "bafkreicard",
        "seed_cid": "bafkreiseed",
        "seed_root": b"\x01" * 32,
        "seed_count": 100,
        "quorum_bps": 2000,
        "approval_bps": 5000,
        "voting_period": PERIOD,
        "stake": STAKE,
        "reward_r0": ETHER,
        "reward_n0": 1000,
        "evaluator": ZERO,
        "training_fee": 0,
        "min_royalty_bps": 0,
    }
    args.update(overrides)
    return args


def create_dataset(
    market: Any, initiator: str, name: str = "digits", **overrides: Any
) -> tuple[int, Any]:
    """Create a dataset as `initiator`; return (dataset id, its ShareToken)."""
    a = dataset_args(name, **overrides)
    with boa.env.prank(initiator):
        dataset_id = market.create_dataset(*a.values())
    token = deployers().token.at(market.get_dataset(dataset_id).share_token)
    return dataset_id, token


def commitment(
    market: Any, proposer: str, dataset_id: int, cid: str, root: bytes, items: int
) -> bytes:
    """The commitment `proposer` must make before proposing this batch."""
    return market.commitment_of(proposer, dataset_id, cid, root, items)


def commit(
    market: Any,
    proposer: str,
    dataset_id: int,
    items: int = 10,
    cid: str = "bafkreimanifest",
    root: bytes = b"\x02" * 32,
) -> int:
    """Commit to a batch as `proposer`; return the commit (snapshot) block."""
    with boa.env.prank(proposer):
        market.commit(dataset_id, commitment(market, proposer, dataset_id, cid, root, items))
    return int(boa.env.evm.patch.block_number)


def reveal(
    market: Any,
    proposer: str,
    dataset_id: int,
    items: int = 10,
    value: int = STAKE,
    cid: str = "bafkreimanifest",
    root: bytes = b"\x02" * 32,
) -> int:
    """The contract's `propose` call (the reveal of an earlier commit)."""
    with boa.env.prank(proposer):
        return market.propose(dataset_id, cid, root, items, value=value)


def propose(
    market: Any,
    proposer: str,
    dataset_id: int,
    items: int = 10,
    value: int = STAKE,
    cid: str = "bafkreimanifest",
    root: bytes | None = None,
) -> int:
    """Commit, mine a block and reveal a batch as `proposer`; return the proposal id.

    Without `root`, each call uses a fresh root (a root can be pending only once).
    """
    global _ROOTS
    if root is None:
        _ROOTS += 1
        root = _ROOTS.to_bytes(32, "big")
    commit(market, proposer, dataset_id, items, cid, root)
    next_block()
    return reveal(market, proposer, dataset_id, items, value, cid, root)


_ROOTS = 2**200


def next_block() -> None:
    """Mine past the current block (boa does not advance blocks by itself)."""
    boa.env.time_travel(blocks=1)


@pytest.fixture
def market() -> Any:
    return deploy_market()


@pytest.fixture
def alice() -> str:
    return new_account()


@pytest.fixture
def bob() -> str:
    return new_account()


@pytest.fixture
def carol() -> str:
    return new_account()


@pytest.fixture
def dataset(market: Any, alice: str) -> tuple[int, Any]:
    """A dataset created by alice: (id, token)."""
    return create_dataset(market, alice)


@pytest.fixture
def token_with_owner() -> tuple[Any, str]:
    """A ShareToken deployed directly with an EOA as its market, for token-only tests."""
    owner = new_account()
    token = deployers().token.deploy("Shares", "SHR", owner)
    return token, owner
