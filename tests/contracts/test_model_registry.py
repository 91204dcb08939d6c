"""ModelRegistry: models, attested checkpoints, replay protection, payment channels, reverts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boa
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from databright.chain.model_registry import (
    Attestation,
    Voucher,
    digest,
    sign,
    split_royalty,
)
from databright.chain.reverts import REVERTS
from tests.contracts.conftest import CONTRACTS, ETHER, ZERO, deployers, new_account

TESTS = Path(__file__).resolve().parent
DOCS = CONTRACTS.parents[2] / "docs" / "model-market.md"
REASON = re.compile(r'"(registry: [^"]+)"')
FEE = ETHER // 10
FLOOR = 2_000
ENTRIES = 5
CHALLENGE = 3_600
TIMEOUT = 86_400
SHA = b"\x5a" * 32
N_HALF = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

_LOADED: dict[str, Any] = {}


def _load(name: str, path: Path) -> Any:
    if name not in _LOADED:
        _LOADED[name] = boa.load_partial(str(path))
    return _LOADED[name]


def registry_deployer() -> Any:
    return _load("registry", CONTRACTS / "ModelRegistry.vy")


def terms_deployer() -> Any:
    return _load("terms", TESTS / "MockDataTerms.vy")


def key_account(balance: int = 1000 * ETHER) -> LocalAccount:
    """A funded account whose private key we hold (to sign vouchers and attestations)."""
    account: LocalAccount = Account.create()
    boa.env.set_balance(account.address, balance)
    return account


@dataclass
class World:
    registry: Any
    terms: Any
    token: Any
    token_owner: str
    evaluator: LocalAccount
    dev: str
    payer: LocalAccount
    holder: str


def make_token(owner: str, holder: str | None = None, shares: int = 4 * ETHER) -> Any:
    token = deployers().token.deploy("Shares", "SHR", owner)
    if holder is not None:
        with boa.env.prank(owner):
            token.mint(holder, shares)
    return token


REFUSING_TOKEN = """
refuse: public(bool)
received: public(uint256)

@external
def set_refuse(refuse: bool):
    self.refuse = refuse

@external
@payable
def distribute():
    assert not self.refuse, "shares: no holders"
    self.received += msg.value
"""


def refusing_token() -> Any:
    """A stand-in ShareToken whose distribute() reverts like one without holders until told.

    (A real ShareToken reverting inside a call trips titanoboa's storage dump of it, so the
    refusal is played by this small contract.)
    """
    token = boa.loads(REFUSING_TOKEN)
    token.set_refuse(True)
    return token


def set_terms(w: World, dataset_id: int, token: Any, **kw: Any) -> None:
    w.terms.set_terms(
        dataset_id,
        token.address,
        kw.get("evaluator", w.evaluator.address),
        kw.get("fee", FEE),
        kw.get("floor", FLOOR),
        kw.get("entries", ENTRIES),
    )


def forget_storage_traces() -> None:
    """Drop titanoboa's session-wide SHA3/SSTORE traces.

    boa keeps them only to print a contract's storage when a call reverts; after many
    contracts in one process that printing can mis-decode a slot and raise AttributeError
    instead of the revert. These tests need the revert reason, not the storage dump.
    """
    boa.env.sha3_trace = {}
    boa.env.sstore_trace = {}


@pytest.fixture
def w() -> World:
    forget_storage_traces()
    owner, holder = new_account(), new_account()
    token = make_token(owner, holder)
    terms = terms_deployer().deploy()
    registry = registry_deployer().deploy(terms.address, CHALLENGE)
    world = World(
        registry, terms, token, owner, key_account(), new_account(), key_account(), holder
    )
    set_terms(world, 1, token)
    return world


def register(w: World, dataset_id: int = 1, royalty: int = 3_000, value: int = FEE) -> int:
    with boa.env.prank(w.dev):
        return int(
            w.registry.register(
                dataset_id, "digits-cnn", b"\x11" * 32, 10**12, royalty, value=value
            )
        )


def attestation(w: World, model_id: int, **kw: Any) -> Attestation:
    fields: dict[str, Any] = {
        "chain_id": boa.env.evm.patch.chain_id,
        "registry": w.registry.address,
        "model_id": model_id,
        "checkpoint_sha256": SHA,
        "dataset_id": 1,
        "entries": ENTRIES,
        "metric_bps": 9_000,
    }
    fields.update(kw)
    return Attestation(**fields)


def submit(
    w: World,
    model_id: int,
    metric: int = 9_000,
    signature: bytes | None = None,
    *,
    sha: bytes = SHA,
    entries: int = ENTRIES,
    sender: str | None = None,
    value: int = FEE,
) -> int:
    """Submit a checkpoint; by default attested by the evaluator over exactly these fields."""
    if signature is None:
        a = attestation(w, model_id, checkpoint_sha256=sha, entries=entries, metric_bps=metric)
        signature = sign(a, w.evaluator)
    with boa.env.prank(sender or w.dev):
        return int(
            w.registry.submit_checkpoint(
                model_id, "bafkreickpt", sha, entries, metric, signature, value=value
            )
        )


def voucher(w: World, channel_id: int, amount: int, **kw: Any) -> Voucher:
    fields: dict[str, Any] = {
        "chain_id": boa.env.evm.patch.chain_id,
        "registry": w.registry.address,
        "channel_id": channel_id,
        "amount": amount,
    }
    fields.update(kw)
    return Voucher(**fields)


def open_channel(w: World, model_id: int, deposit: int = ETHER, timeout: int = TIMEOUT) -> int:
    with boa.env.prank(w.payer.address):
        return int(w.registry.open_channel(model_id, timeout, value=deposit))


def close(w: World, channel_id: int, amount: int, signature: bytes | None = None) -> None:
    sig = sign(voucher(w, channel_id, amount), w.payer) if signature is None else signature
    with boa.env.prank(w.dev):
        w.registry.close(channel_id, amount, sig)


def names(logs: list[Any]) -> list[str]:
    return [type(log).__name__ for log in logs]


def registry_logs(w: World) -> list[Any]:
    """The registry's own logs of the last transaction (not the ShareToken's)."""
    return [log for log in w.registry.get_logs() if log.address == w.registry.address]


def high_s(signature: bytes) -> bytes:
    """The malleable twin (n - s, flipped v) of a valid signature: same signer to ecrecover."""
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    return r + (N - s).to_bytes(32, "big") + bytes([55 - v])


# --- deployment -----------------------------------------------------------------------------


def test_deploy_checks_terms_and_challenge():
    terms = terms_deployer().deploy()
    with boa.reverts("registry: terms not a contract"):
        registry_deployer().deploy(new_account(), CHALLENGE)
    with boa.reverts("registry: bad challenge period"):
        registry_deployer().deploy(terms.address, 0)
    with boa.reverts("registry: bad challenge period"):
        registry_deployer().deploy(terms.address, 365 * 86400 + 1)
    registry = registry_deployer().deploy(terms.address, 365 * 86400)
    assert registry.data_terms() == terms.address
    assert registry.challenge_period() == 365 * 86400


# --- register -------------------------------------------------------------------------------


def test_register_pays_the_training_fee_as_a_dividend(w):
    model_id = register(w)
    logs = registry_logs(w)  # of the last transaction: read before any view call
    assert model_id == 1 and w.registry.model_count() == 1
    assert names(logs) == ["ModelRegistered", "DividendPaid"]
    paid = logs[1]
    assert (paid.dataset_id, paid.model_id, paid.source, paid.amount, paid.held) == (
        1,
        1,
        1,
        FEE,
        False,
    )
    assert w.token.total_distributed() == FEE
    # the sole holder's claim plus the rounding the token carries into its next distribution
    owed = w.token.dividends_of(w.holder)
    assert owed <= FEE and FEE - 1 <= owed + w.token.carried() <= FEE
    assert boa.env.get_balance(w.registry.address) == 0
    m = w.registry.get_model(1)
    assert (m.owner, m.dataset_id, m.share_token, m.name) == (
        w.dev,
        1,
        w.token.address,
        "digits-cnn",
    )
    assert (m.program_digest, m.price_per_prediction, m.royalty_bps) == (b"\x11" * 32, 10**12, 3000)
    assert (m.checkpoint_count, m.best_checkpoint, m.best_metric_bps) == (0, 0, 0)
    assert w.registry.share_token_of(1) == w.token.address


def test_register_at_exactly_the_floor_and_with_a_free_dataset(w):
    assert register(w, royalty=FLOOR) == 1
    set_terms(w, 2, w.token, fee=0, floor=0)
    before = w.token.total_distributed()
    assert register(w, dataset_id=2, royalty=0, value=0) == 2
    assert "DividendPaid" not in names(w.registry.get_logs())
    assert w.token.total_distributed() == before


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"dataset_id": 9}, "registry: unknown dataset"),
        ({"royalty": 10_001}, "registry: bad royalty"),
        ({"royalty": FLOOR - 1}, "registry: royalty below floor"),
        ({"value": FEE - 1}, "registry: wrong fee"),
        ({"value": FEE + 1}, "registry: wrong fee"),
    ],
)
def test_register_reverts(w, kwargs, reason):
    with boa.reverts(reason):
        register(w, **kwargs)


def test_register_empty_name(w):
    with boa.env.prank(w.dev), boa.reverts("registry: empty name"):
        w.registry.register(1, "", b"\x11" * 32, 1, 3000, value=FEE)


def test_refused_dividend_is_held_then_released_by_anyone(w):
    empty_token = refusing_token()
    set_terms(w, 2, empty_token)
    register(w, dataset_id=2)
    paid = w.registry.get_logs()[-1]
    assert (type(paid).__name__, paid.held, paid.amount) == ("DividendPaid", True, FEE)
    assert w.registry.held_of(2) == FEE
    assert boa.env.get_balance(w.registry.address) == FEE
    with boa.reverts("shares: no holders"):
        w.registry.release_held(2)
    assert w.registry.held_of(2) == FEE
    empty_token.set_refuse(False)
    with boa.env.prank(new_account()):
        assert w.registry.release_held(2) == FEE
    assert w.registry.held_of(2) == 0
    assert empty_token.received() == FEE
    assert boa.env.get_balance(w.registry.address) == 0
    with boa.reverts("registry: nothing held"):
        w.registry.release_held(2)


# --- checkpoints ----------------------------------------------------------------------------


def test_attested_checkpoint_becomes_best_and_pays_the_fee(w):
    model_id = register(w)
    assert submit(w, model_id, 9_000) == 1
    logs = registry_logs(w)
    assert names(logs) == ["CheckpointSubmitted", "DividendPaid"]
    c = logs[0]
    assert (c.model_id, c.checkpoint, c.cid, c.file_sha256, c.entries, c.metric_bps) == (
        1,
        1,
        "bafkreickpt",
        SHA,
        ENTRIES,
        9_000,
    )
    assert (c.attestor, c.best) == (w.evaluator.address, True)
    m = w.registry.get_model(model_id)
    assert (m.checkpoint_count, m.best_checkpoint, m.best_metric_bps) == (1, 1, 9_000)
    cp = w.registry.get_checkpoint(model_id, 1)
    assert (cp.cid, cp.file_sha256, cp.entries, cp.metric_bps, cp.attestor) == (
        "bafkreickpt",
        SHA,
        ENTRIES,
        9_000,
        w.evaluator.address,
    )
    assert cp.submitted_at == boa.env.evm.patch.timestamp
    assert w.token.total_distributed() == 2 * FEE


def test_best_only_moves_up_with_an_attested_metric(w):
    model_id = register(w)
    assert submit(w, model_id, 5_000, b"") == 1  # self-reported: kept, not best
    assert w.registry.get_model(model_id).best_checkpoint == 0
    assert w.registry.get_checkpoint(model_id, 1).attestor == ZERO
    submit(w, model_id, 7_000)  # 2: attested, first best
    submit(w, model_id, 6_000)  # 3: attested but lower
    submit(w, model_id, 7_000)  # 4: attested, equal: not higher
    submit(w, model_id, 9_900, b"")  # 5: self-reported high metric never wins
    stranger = key_account()
    a = attestation(w, model_id, metric_bps=9_800)
    submit(w, model_id, 9_800, sign(a, stranger))  # 6: signed by an untrusted key
    assert w.registry.get_checkpoint(model_id, 6).attestor == ZERO
    m = w.registry.get_model(model_id)
    assert (m.checkpoint_count, m.best_checkpoint, m.best_metric_bps) == (6, 2, 7_000)
    submit(w, model_id, 7_001)  # 7
    assert w.registry.get_model(model_id).best_checkpoint == 7
    assert w.token.total_distributed() == 8 * FEE


def test_self_reported_checkpoint_attested_later(w):
    """Train first, attest later: anyone delivers the evaluator's signature, no fee, once."""
    model_id = register(w)
    submit(w, model_id, 9_500, b"")  # 1: self-reported 95 %
    submit(w, model_id, 6_000)  # 2: attested 60 %: the best
    paid = w.token.total_distributed()
    a = attestation(w, model_id, metric_bps=8_800)  # the evaluator measured 88 %, not 95 %
    with boa.reverts("registry: untrusted attestor"), boa.env.prank(w.holder):
        w.registry.attest(model_id, 1, 8_800, sign(a, key_account()))
    with boa.reverts("registry: untrusted attestor"), boa.env.prank(w.holder):
        w.registry.attest(model_id, 1, 9_500, sign(a, w.evaluator))  # signed 8,800, not 9,500
    other_snapshot = attestation(w, model_id, metric_bps=8_800, entries=ENTRIES - 1)
    with boa.reverts("registry: untrusted attestor"), boa.env.prank(w.holder):
        w.registry.attest(model_id, 1, 8_800, sign(other_snapshot, w.evaluator))
    with boa.reverts("registry: bad signature length"), boa.env.prank(w.holder):
        w.registry.attest(model_id, 1, 8_800, b"\x01" * 64)
    with boa.reverts("registry: unknown checkpoint"), boa.env.prank(w.holder):
        w.registry.attest(model_id, 3, 8_800, sign(a, w.evaluator))
    with boa.env.prank(w.holder):
        w.registry.attest(model_id, 1, 8_800, sign(a, w.evaluator))
    (log,) = registry_logs(w)
    assert (type(log).__name__, log.model_id, log.checkpoint, log.metric_bps, log.attestor,
            log.best) == ("CheckpointAttested", model_id, 1, 8_800, w.evaluator.address, True)
    cp = w.registry.get_checkpoint(model_id, 1)
    assert (cp.metric_bps, cp.attestor, cp.entries) == (8_800, w.evaluator.address, ENTRIES)
    m = w.registry.get_model(model_id)
    assert (m.best_checkpoint, m.best_metric_bps) == (1, 8_800)
    assert w.token.total_distributed() == paid  # attesting costs the data nothing, pays nothing
    with boa.reverts("registry: already attested"), boa.env.prank(w.holder):
        w.registry.attest(model_id, 1, 8_800, sign(a, w.evaluator))
    with boa.reverts("registry: already attested"), boa.env.prank(w.holder):
        w.registry.attest(model_id, 2, 8_800, sign(attestation(w, model_id, metric_bps=8_800),
                                                  w.evaluator))


def test_trusted_attestor_hook(w):
    model_id = register(w)
    enclave = key_account()
    a = attestation(w, model_id, metric_bps=8_000)
    submit(w, model_id, 8_000, sign(a, enclave))
    assert w.registry.get_model(model_id).best_checkpoint == 0
    assert w.registry.owner() == boa.env.eoa
    w.registry.set_attestor(enclave.address, True)
    (log,) = w.registry.get_logs()
    assert (type(log).__name__, log.attestor, log.trusted) == ("AttestorSet", enclave.address, True)
    assert w.registry.is_trusted_attestor(enclave.address)
    submit(w, model_id, 8_000, sign(a, enclave))
    assert w.registry.get_model(model_id).best_checkpoint == 2
    assert w.registry.get_checkpoint(model_id, 2).attestor == enclave.address
    w.registry.set_attestor(enclave.address, False)
    a2 = attestation(w, model_id, metric_bps=8_500)
    submit(w, model_id, 8_500, sign(a2, enclave))
    assert w.registry.get_model(model_id).best_checkpoint == 2


def test_high_s_attestation_is_not_trusted(w):
    model_id = register(w)
    good = sign(attestation(w, model_id), w.evaluator)
    submit(w, model_id, 9_000, high_s(good))
    assert w.registry.get_checkpoint(model_id, 1).attestor == ZERO
    v_zero = good[:64] + bytes([good[64] - 27])  # v as 0/1 is accepted
    submit(w, model_id, 9_000, v_zero)
    assert w.registry.get_checkpoint(model_id, 2).attestor == w.evaluator.address
    bad_v = good[:64] + bytes([29])
    submit(w, model_id, 9_100, bad_v)
    assert w.registry.get_checkpoint(model_id, 3).attestor == ZERO


def test_submit_checkpoint_reverts(w):
    model_id = register(w)
    with boa.reverts("registry: unknown model"):
        submit(w, 7, signature=b"")
    with boa.reverts("registry: only model owner"):
        submit(w, model_id, signature=b"", sender=new_account())
    with boa.env.prank(w.dev), boa.reverts("registry: empty cid"):
        w.registry.submit_checkpoint(model_id, "", SHA, 1, 1, b"", value=FEE)
    with boa.reverts("registry: empty sha256"):
        submit(w, model_id, signature=b"", sha=b"\x00" * 32)
    with boa.reverts("registry: metric out of range"):
        submit(w, model_id, 10_001, b"")
    with boa.reverts("registry: bad signature length"):
        submit(w, model_id, 9_000, b"\x01" * 64)
    with boa.reverts("registry: bad snapshot"):
        submit(w, model_id, signature=b"", entries=0)
    with boa.reverts("registry: bad snapshot"):
        submit(w, model_id, signature=b"", entries=ENTRIES + 1)
    with boa.reverts("registry: wrong fee"):
        submit(w, model_id, signature=b"", value=0)
    assert w.registry.get_model(model_id).checkpoint_count == 0
    with boa.reverts("registry: unknown checkpoint"):
        w.registry.get_checkpoint(model_id, 1)
    with boa.reverts("registry: unknown checkpoint"):
        w.registry.get_checkpoint(model_id, 0)
    with boa.reverts("registry: unknown model"):
        w.registry.get_model(2)


def test_snapshot_bound_follows_the_dataset(w):
    model_id = register(w)
    set_terms(w, 1, w.token, entries=ENTRIES + 3)  # the dataset grew
    submit(w, model_id, 9_000, entries=ENTRIES + 3)
    assert w.registry.get_checkpoint(model_id, 1).entries == ENTRIES + 3


# --- attestation replay ---------------------------------------------------------------------


def test_attestation_is_bound_to_its_model(w):
    first, second = register(w), register(w)
    sig = sign(attestation(w, first), w.evaluator)
    submit(w, second, 9_000, sig)
    assert w.registry.get_checkpoint(second, 1).attestor == ZERO
    submit(w, first, 9_000, sig)
    assert w.registry.get_checkpoint(first, 1).attestor == w.evaluator.address


def test_attestation_is_bound_to_its_dataset(w):
    set_terms(w, 2, w.token)  # same evaluator, same token
    on_one = register(w, dataset_id=1)
    on_two = register(w, dataset_id=2)
    # signed as if model `on_two` were trained on dataset 1
    sig = sign(attestation(w, on_two, dataset_id=1), w.evaluator)
    submit(w, on_two, 9_000, sig)
    assert w.registry.get_checkpoint(on_two, 1).attestor == ZERO
    sig2 = sign(attestation(w, on_two, dataset_id=2), w.evaluator)
    submit(w, on_two, 9_000, sig2)
    assert w.registry.get_checkpoint(on_two, 2).attestor == w.evaluator.address
    assert on_one == 1


def test_attestation_is_bound_to_snapshot_checkpoint_and_metric(w):
    model_id = register(w)
    sig = sign(attestation(w, model_id, entries=3), w.evaluator)
    submit(w, model_id, 9_000, sig, entries=4)  # another snapshot
    submit(w, model_id, 9_000, sig, entries=3, sha=b"\x77" * 32)  # another checkpoint file
    submit(w, model_id, 9_500, sig, entries=3)  # another metric
    for n in (1, 2, 3):
        assert w.registry.get_checkpoint(model_id, n).attestor == ZERO
    submit(w, model_id, 9_000, sig, entries=3)
    assert w.registry.get_checkpoint(model_id, 4).attestor == w.evaluator.address


def test_attestation_is_bound_to_its_registry(w):
    other = registry_deployer().deploy(w.terms.address, CHALLENGE)
    register(w)
    with boa.env.prank(w.dev):
        other.register(1, "digits-cnn", b"\x11" * 32, 1, 3000, value=FEE)
    sig = sign(attestation(w, 1), w.evaluator)  # for w.registry
    with boa.env.prank(w.dev):
        other.submit_checkpoint(1, "bafkreickpt", SHA, ENTRIES, 9_000, sig, value=FEE)
    assert other.get_checkpoint(1, 1).attestor == ZERO
    # the struct's registry field is checked too, not only the domain's verifying contract
    mixed = sign(attestation(w, 1, registry=other.address), w.evaluator)
    submit(w, 1, 9_000, mixed)
    assert w.registry.get_checkpoint(1, 1).attestor == ZERO


def test_attestation_is_bound_to_its_chain(w):
    model_id = register(w)
    sig = sign(attestation(w, model_id), w.evaluator)
    original = boa.env.evm.patch.chain_id
    try:
        boa.env.evm.patch.chain_id = original + 1
        submit(w, model_id, 9_000, sig)
        assert w.registry.get_checkpoint(model_id, 1).attestor == ZERO
        ok = sign(attestation(w, model_id, chain_id=original + 1), w.evaluator)
        submit(w, model_id, 9_000, ok)
        assert w.registry.get_checkpoint(model_id, 2).attestor == w.evaluator.address
    finally:
        boa.env.evm.patch.chain_id = original


def test_python_digests_match_the_contract(w):
    model_id = register(w)
    a = attestation(w, model_id, metric_bps=1234, entries=2)
    assert w.registry.attestation_digest(model_id, SHA, 1, 2, 1234) == digest(a)
    v = voucher(w, 3, 10**15)
    assert w.registry.voucher_digest(3, 10**15) == digest(v)
    assert w.registry.voucher_digest(3, 10**15 + 1) != digest(v)


# --- channels -------------------------------------------------------------------------------


def test_open_channel_and_view(w):
    model_id = register(w)
    now = boa.env.evm.patch.timestamp
    channel_id = open_channel(w, model_id, ETHER)
    (log,) = w.registry.get_logs()
    assert (type(log).__name__, log.channel_id, log.model_id, log.payer) == (
        "ChannelOpened",
        1,
        1,
        w.payer.address,
    )
    assert (log.deposit, log.expiry) == (ETHER, now + TIMEOUT)
    c = w.registry.get_channel(channel_id)
    assert (c.payer, c.model_id, c.deposit, c.expiry, c.reclaim_at, c.status) == (
        w.payer.address,
        1,
        ETHER,
        now + TIMEOUT,
        0,
        1,
    )
    assert boa.env.get_balance(w.registry.address) == ETHER
    with boa.reverts("registry: unknown channel"):
        w.registry.get_channel(2)


def test_open_channel_reverts(w):
    model_id = register(w)
    with boa.reverts("registry: unknown model"):
        open_channel(w, 5)
    with boa.reverts("registry: empty deposit"):
        open_channel(w, model_id, 0)
    with boa.reverts("registry: bad timeout"):
        open_channel(w, model_id, timeout=0)
    with boa.reverts("registry: bad timeout"):
        open_channel(w, model_id, timeout=3650 * 86400 + 1)
    boa.env.set_balance(w.payer.address, 2**97)
    with boa.reverts("registry: deposit too large"):
        open_channel(w, model_id, 2**96)
    assert open_channel(w, model_id, 2**96 - 1) == 1


def test_close_splits_every_wei(w):
    model_id = register(w, royalty=3_333)
    channel_id = open_channel(w, model_id, ETHER)
    amount = 10**17 + 7  # royalty 3,333 bps of this is not a whole number of wei
    before = w.token.total_distributed()
    close(w, channel_id, amount)
    royalty, payee_amount = split_royalty(amount, 3_333)
    assert royalty * 10_000 >= amount * 3_333 > (royalty - 1) * 10_000  # rounded up
    closed = next(log for log in w.registry.get_logs() if type(log).__name__ == "ChannelClosed")
    assert (closed.amount, closed.royalty, closed.payee_amount, closed.refund) == (
        amount,
        royalty,
        payee_amount,
        ETHER - amount,
    )
    assert w.token.total_distributed() - before == royalty
    assert w.registry.owed_of(w.dev) == payee_amount
    assert w.registry.owed_of(w.payer.address) == ETHER - amount
    assert boa.env.get_balance(w.registry.address) == payee_amount + ETHER - amount
    assert w.registry.get_channel(channel_id).status == 3
    dev_before = boa.env.get_balance(w.dev)
    with boa.env.prank(w.dev):
        assert w.registry.withdraw() == payee_amount
    assert boa.env.get_balance(w.dev) - dev_before == payee_amount
    with boa.env.prank(w.payer.address):
        assert w.registry.withdraw() == ETHER - amount
    assert boa.env.get_balance(w.registry.address) == 0
    with boa.env.prank(w.dev), boa.reverts("registry: nothing to withdraw"):
        w.registry.withdraw()


def test_close_with_the_whole_deposit_and_with_zero(w):
    model_id = register(w)
    full = open_channel(w, model_id, 10**6)
    close(w, full, 10**6)
    assert w.registry.owed_of(w.payer.address) == 0
    nothing = open_channel(w, model_id, 10**6)
    close(w, nothing, 0)
    assert w.registry.owed_of(w.payer.address) == 10**6
    assert "DividendPaid" not in names(w.registry.get_logs())


def test_refused_royalty_is_held(w):
    set_terms(w, 2, refusing_token(), fee=0)
    model_id = register(w, dataset_id=2, value=0)
    channel_id = open_channel(w, model_id, ETHER)
    close(w, channel_id, 10**17)
    paid = w.registry.get_logs()[-1]
    royalty, _ = split_royalty(10**17, 3_000)
    assert w.registry.held_of(2) == royalty
    assert (paid.source, paid.held, paid.amount) == (2, True, royalty)


def test_forged_and_misdirected_vouchers_are_refused(w):
    model_id = register(w)
    channel_id = open_channel(w, model_id, ETHER)
    other_channel = open_channel(w, model_id, ETHER)
    other_registry = registry_deployer().deploy(w.terms.address, CHALLENGE)
    amount = 10**17
    bad = {
        "forged": sign(voucher(w, channel_id, amount), key_account()),
        "other amount": sign(voucher(w, channel_id, amount - 1), w.payer),
        "other channel": sign(voucher(w, other_channel, amount), w.payer),
        "other registry": sign(
            voucher(w, channel_id, amount, registry=other_registry.address), w.payer
        ),
        "other chain": sign(voucher(w, channel_id, amount, chain_id=7), w.payer),
        "high s": high_s(sign(voucher(w, channel_id, amount), w.payer)),
        "garbage": b"\x00" * 65,
    }
    for what, sig in bad.items():
        with boa.reverts("registry: bad voucher"):
            close(w, channel_id, amount, sig)
        assert w.registry.get_channel(channel_id).status == 1, what
    with boa.reverts("registry: bad signature length"):
        close(w, channel_id, amount, b"\x01" * 64)
    with boa.reverts("registry: voucher exceeds deposit"):
        close(w, channel_id, ETHER + 1)
    close(w, channel_id, amount)
    assert w.registry.owed_of(w.dev) == split_royalty(amount, 3_000)[1]


def test_voucher_is_worthless_on_another_chain(w):
    model_id = register(w)
    channel_id = open_channel(w, model_id, ETHER)
    sig = sign(voucher(w, channel_id, 10**17), w.payer)
    original = boa.env.evm.patch.chain_id
    try:
        boa.env.evm.patch.chain_id = original + 1
        with boa.reverts("registry: bad voucher"):
            close(w, channel_id, 10**17, sig)
    finally:
        boa.env.evm.patch.chain_id = original
    close(w, channel_id, 10**17, sig)


def test_close_is_final_a_later_or_lower_voucher_is_refused(w):
    model_id = register(w)
    channel_id = open_channel(w, model_id, ETHER)
    close(w, channel_id, 5 * 10**16)
    for amount in (4 * 10**16, 6 * 10**16):  # decreasing, then a higher one signed earlier
        with boa.reverts("registry: channel not open"):
            close(w, channel_id, amount)
    assert w.registry.owed_of(w.payer.address) == ETHER - 5 * 10**16


def test_close_reverts_for_strangers_and_unknown_channels(w):
    model_id = register(w)
    channel_id = open_channel(w, model_id, ETHER)
    sig = sign(voucher(w, channel_id, 1), w.payer)
    with boa.env.prank(w.payer.address), boa.reverts("registry: only payee"):
        w.registry.close(channel_id, 1, sig)
    with boa.env.prank(w.dev), boa.reverts("registry: unknown channel"):
        w.registry.close(9, 1, sig)


def test_top_up(w):
    model_id = register(w)
    channel_id = open_channel(w, model_id, ETHER)
    with boa.env.prank(w.payer.address):
        assert w.registry.top_up(channel_id, value=ETHER) == 2 * ETHER
    (log,) = w.registry.get_logs()
    assert (type(log).__name__, log.amount, log.deposit) == ("ChannelToppedUp", ETHER, 2 * ETHER)
    close(w, channel_id, ETHER + 1)  # over the first deposit, within the topped-up one
    assert w.registry.owed_of(w.payer.address) == ETHER - 1
    with boa.env.prank(w.payer.address), boa.reverts("registry: channel not open"):
        w.registry.top_up(channel_id, value=1)
    fresh = open_channel(w, model_id, ETHER)
    with boa.env.prank(w.dev), boa.reverts("registry: only payer"):
        w.registry.top_up(fresh, value=1)
    with boa.env.prank(w.payer.address), boa.reverts("registry: empty deposit"):
        w.registry.top_up(fresh, value=0)
    with boa.env.prank(w.payer.address), boa.reverts("registry: unknown channel"):
        w.registry.top_up(99, value=1)
    boa.env.set_balance(w.payer.address, 2**97)
    with boa.env.prank(w.payer.address), boa.reverts("registry: deposit too large"):
        w.registry.top_up(fresh, value=2**96 - ETHER)


def test_reclaim_after_timeout_and_challenge_window(w):
    model_id = register(w)
    channel_id = open_channel(w, model_id, ETHER)
    with boa.env.prank(w.payer.address):
        with boa.reverts("registry: channel not expired"):
            w.registry.start_reclaim(channel_id)
        with boa.reverts("registry: reclaim not started"):
            w.registry.reclaim(channel_id)
    boa.env.time_travel(seconds=TIMEOUT)
    with boa.env.prank(w.dev), boa.reverts("registry: only payer"):
        w.registry.start_reclaim(channel_id)
    with boa.env.prank(w.payer.address):
        reclaim_at = w.registry.start_reclaim(channel_id)
        assert reclaim_at == boa.env.evm.patch.timestamp + CHALLENGE
        (log,) = w.registry.get_logs()
        assert (type(log).__name__, log.reclaim_at) == ("ReclaimStarted", reclaim_at)
        c = w.registry.get_channel(channel_id)
        assert (c.status, c.reclaim_at, c.deposit) == (2, reclaim_at, ETHER)
        with boa.reverts("registry: channel not open"):
            w.registry.start_reclaim(channel_id)
        with boa.reverts("registry: channel not open"):
            w.registry.top_up(channel_id, value=1)
        with boa.reverts("registry: challenge window open"):
            w.registry.reclaim(channel_id)
    boa.env.time_travel(seconds=CHALLENGE - 1)
    with boa.env.prank(w.payer.address), boa.reverts("registry: challenge window open"):
        w.registry.reclaim(channel_id)
    boa.env.time_travel(seconds=1)
    with boa.env.prank(w.dev), boa.reverts("registry: only payer"):
        w.registry.reclaim(channel_id)
    with boa.env.prank(w.payer.address):
        assert w.registry.reclaim(channel_id) == ETHER
        with boa.reverts("registry: reclaim not started"):
            w.registry.reclaim(channel_id)
    assert w.registry.get_channel(channel_id).status == 4
    assert w.registry.owed_of(w.payer.address) == ETHER
    with boa.reverts("registry: channel not open"):
        close(w, channel_id, 1)
    with boa.reverts("registry: unknown channel"):
        w.registry.start_reclaim(5)
    with boa.reverts("registry: unknown channel"):
        w.registry.reclaim(5)


def test_payee_may_close_during_the_challenge_window(w):
    model_id = register(w)
    channel_id = open_channel(w, model_id, ETHER)
    boa.env.time_travel(seconds=TIMEOUT)
    with boa.env.prank(w.payer.address):
        w.registry.start_reclaim(channel_id)
    boa.env.time_travel(seconds=CHALLENGE - 1)
    close(w, channel_id, 3 * 10**17)
    assert w.registry.get_channel(channel_id).status == 3
    with boa.env.prank(w.payer.address), boa.reverts("registry: reclaim not started"):
        w.registry.reclaim(channel_id)
    assert w.registry.owed_of(w.payer.address) == ETHER - 3 * 10**17


def test_no_reentry_while_withdraw_pays(w):
    """A payer contract that calls back into the registry from its receive hook is refused."""
    attacker_src = """
interface IRegistry:
    def withdraw() -> uint256: nonpayable
    def open_channel(m: uint256, t: uint256) -> uint256: payable
    def start_reclaim(c: uint256) -> uint256: nonpayable
    def reclaim(c: uint256) -> uint256: nonpayable

registry: IRegistry
model_id: uint256
tried: public(bool)
reentered: public(bool)

@deploy
def __init__(r: address, m: uint256):
    self.registry = IRegistry(r)
    self.model_id = m

@external
@payable
def go():
    c: uint256 = extcall self.registry.open_channel(self.model_id, 1, value=msg.value)

@external
def finish(c: uint256):
    extcall self.registry.start_reclaim(c)

@external
def take(c: uint256):
    extcall self.registry.reclaim(c)
    extcall self.registry.withdraw()

@external
@payable
def __default__():
    if not self.tried:
        self.tried = True
        # re-enter with the money just received: open a new channel
        self.reentered = raw_call(
            self.registry.address,
            abi_encode(self.model_id, convert(1, uint256), method_id=method_id("open_channel(uint256,uint256)")),
            value=msg.value,
            revert_on_failure=False,
        )
"""
    model_id = register(w)
    attacker = boa.loads(attacker_src, w.registry.address, model_id)
    boa.env.set_balance(boa.env.eoa, 10 * ETHER)
    attacker.go(value=ETHER)
    boa.env.time_travel(seconds=2)
    attacker.finish(1)
    boa.env.time_travel(seconds=CHALLENGE)
    attacker.take(1)
    assert attacker.tried() and not attacker.reentered()
    assert w.registry.channel_count() == 1
    assert boa.env.get_balance(attacker.address) == ETHER
    assert boa.env.get_balance(w.registry.address) == 0


# --- administration -------------------------------------------------------------------------


def test_owner_functions(w):
    stranger = new_account()
    with boa.env.prank(stranger):
        with boa.reverts("registry: only owner"):
            w.registry.set_attestor(stranger, True)
        with boa.reverts("registry: only owner"):
            w.registry.transfer_ownership(stranger)
    with boa.reverts("registry: zero address"):
        w.registry.set_attestor(ZERO, True)
    with boa.reverts("registry: zero address"):
        w.registry.transfer_ownership(ZERO)
    w.registry.transfer_ownership(stranger)
    (log,) = w.registry.get_logs()
    assert (log.previous_owner, log.new_owner) == (boa.env.eoa, stranger)
    assert w.registry.owner() == stranger
    with boa.reverts("registry: only owner"):
        w.registry.set_attestor(stranger, True)
    with boa.env.prank(stranger):
        w.registry.set_attestor(stranger, True)
    assert w.registry.is_trusted_attestor(stranger)


# --- reasons: every one in the table, tested and documented --------------------------------


def _registry_reasons() -> set[str]:
    return set(REASON.findall((CONTRACTS / "ModelRegistry.vy").read_text()))


def test_every_registry_assert_has_a_prefixed_reason():
    lines = (CONTRACTS / "ModelRegistry.vy").read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("assert "):
            # a long assert puts its reason on the next line, inside parentheses
            statement = stripped + (lines[i + 1].strip() if stripped.endswith("(") else "")
            assert re.search(r', \(?"registry: [^"]+"', statement), statement
        assert "raise" not in stripped.split("#")[0].split(), stripped
    assert len(_registry_reasons()) >= 25


def test_every_registry_reason_is_in_the_table_tested_and_documented():
    reasons = _registry_reasons()
    table = {r for r in REVERTS if r.startswith("registry: ")}
    assert reasons == table
    own = Path(__file__).name
    tests = (
        "\n".join(p.read_text() for p in sorted(TESTS.glob("test_*.py")) if p.name != own)
        + (TESTS / own).read_text().split("# --- reasons:")[0]
    )
    missing = sorted(r for r in reasons if f'"{r}"' not in tests)
    assert not missing, f"registry reasons without a test: {missing}"
    doc = DOCS.read_text()
    undocumented = sorted(r for r in reasons if f"`{r}`" not in doc)
    assert not undocumented, f"registry reasons missing from docs/model-market.md: {undocumented}"
