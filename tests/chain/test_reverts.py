"""Revert reasons → DataBright errors: the table covers the contracts; both error shapes decode."""

from __future__ import annotations

import re

import pytest
from eth_abi import encode
from eth_tester.exceptions import TransactionFailed
from web3.exceptions import ContractLogicError, Web3RPCError

from databright.chain.compile import CONTRACTS_DIR
from databright.chain.reverts import REVERTS, reason_of, revert_error, translate
from databright.errors import (
    AlreadyVotedError,
    ChainUnreachableError,
    ContractNotFoundError,
    ContractRevert,
    InsufficientFundsError,
    InvalidArgumentError,
    NotFoundError,
)

REASON = re.compile(r'"((?:market|shares|registry|compute): [^"]+)"')


def _reasons_in_sources() -> set[str]:
    found: set[str] = set()
    for path in CONTRACTS_DIR.rglob("*.vy"):
        found.update(REASON.findall(path.read_text()))
    return found


def test_every_contract_reason_is_in_the_table() -> None:
    reasons = _reasons_in_sources()
    if not reasons:
        pytest.skip("no contract sources yet")
    missing = sorted(reasons - set(REVERTS))
    assert not missing, f"add these revert reasons to databright.chain.reverts.REVERTS: {missing}"


def test_table_has_no_stale_reasons() -> None:
    reasons = _reasons_in_sources()
    if not reasons:
        pytest.skip("no contract sources yet")
    assert sorted(set(REVERTS) - reasons) == []


def test_known_reason_gets_its_class_and_a_friendly_message() -> None:
    err = revert_error("market: already voted")
    assert isinstance(err, AlreadyVotedError) and isinstance(err, ContractRevert)
    assert err.reason == "market: already voted"
    assert str(err) == "this account already voted on the proposal (market: already voted)"
    missing = revert_error("market: unknown proposal")
    assert isinstance(missing, ContractNotFoundError) and isinstance(missing, NotFoundError)
    assert missing.exit_code == NotFoundError.exit_code


def test_unknown_reason_stays_a_plain_revert() -> None:
    err = revert_error("market: something new")
    assert type(err) is ContractRevert and "market: something new" in str(err)
    assert isinstance(revert_error("shares: invalid thing"), InvalidArgumentError)
    assert "no reason" in str(revert_error(""))


def _error_data(reason: str) -> str:
    return "0x08c379a0" + encode(["string"], [reason]).hex()


def test_anvil_shape() -> None:
    exc = ContractLogicError(
        "execution reverted: market: wrong stake", _error_data("market: wrong stake")
    )
    assert reason_of(exc) == "market: wrong stake"
    no_data = ContractLogicError("execution reverted: shares: no holders")
    assert reason_of(no_data) == "shares: no holders"


def test_eth_tester_shape() -> None:
    assert reason_of(TransactionFailed("execution reverted: market: name taken")) == (
        "market: name taken"
    )
    assert reason_of(ValueError("nope")) is None


def test_panic_data() -> None:
    panic = "0x4e487b71" + encode(["uint256"], [0x11]).hex()
    assert reason_of(ContractLogicError("execution reverted", panic)) == "panic 0x11"


def test_funds_and_connection_shapes() -> None:
    anvil = Web3RPCError(
        "{'code': -32003, 'message': 'Insufficient funds for gas * price + value'}"
    )
    assert isinstance(translate(anvil), InsufficientFundsError)
    from eth_utils import ValidationError

    tester = ValidationError("Sender b'..' cannot afford txn gas 1 with account balance 0")
    assert isinstance(translate(tester), InsufficientFundsError)
    import requests

    down = translate(requests.ConnectionError("refused"), "http://127.0.0.1:9")
    assert isinstance(down, ChainUnreachableError)
    assert "cannot reach the chain at URL: http://127.0.0.1:9" in str(down)
    assert translate(KeyError("x")) is None
