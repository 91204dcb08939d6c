"""Sign-In with Ethereum: the message round-trips, and only an untouched, fresh, single-use
message signed by the account it names signs anyone in."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from eth_account import Account
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from databright.chain.signatures import sign_personal
from databright.index.db import open_index
from databright.index.web import SiweNonce
from databright.market import siwe
from databright.market.siwe import SiweError, SiweMessage

KEY = "0x" + "11" * 32
ADDRESS = Account.from_key(KEY).address
DOMAIN = "127.0.0.1:8000"
ORIGIN = "http://127.0.0.1:8000"
CHAIN = 131277322940537


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    idx = open_index(f"sqlite:///{tmp_path_factory.mktemp('siwe') / 'index.sqlite'}")
    yield idx
    idx.close()


def fresh(index, **over) -> tuple[SiweMessage, str]:
    now = datetime.now(UTC)
    with index.session() as s:
        nonce = siwe.issue_nonce(s).nonce
    fields = {"domain": DOMAIN, "address": ADDRESS, "uri": ORIGIN, "chain_id": CHAIN,
              "nonce": nonce, "issued_at": siwe.format_time(now), "statement": siwe.STATEMENT,
              "expiration_time": siwe.format_time(now + timedelta(minutes=5))}
    fields.update(over)
    msg = SiweMessage(**fields)
    return msg, siwe.build(msg)


def check(index, text, sig, **over):
    args = {"domain": DOMAIN, "origin": ORIGIN, "chain_id": CHAIN}
    args.update(over)
    with index.session() as s:
        return siwe.verify(s, text, sig, **args)


def code_of(index, text, sig, **over) -> str:
    with pytest.raises(SiweError) as err:
        check(index, text, sig, **over)
    return err.value.code


_times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1),
                      timezones=st.just(UTC)).map(siwe.format_time)
_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=40)
_fields = st.builds(
    SiweMessage,
    domain=st.from_regex(r"\A[a-z0-9.-]{1,30}(:[0-9]{1,5})?\Z"),
    address=st.binary(min_size=20, max_size=20).map(lambda b: to_checksum_address(b)),
    uri=st.from_regex(r"\Ahttps?://[a-z0-9.-]{1,20}(:[0-9]{1,5})?(/[a-z0-9]{0,8})?\Z"),
    chain_id=st.integers(1, 2**63),
    nonce=st.from_regex(r"\A[A-Za-z0-9]{8,64}\Z"),
    issued_at=_times,
    statement=st.none() | _text.filter(lambda t: t != "" and not t.startswith("URI: ")),
    version=st.just("1"),
    expiration_time=st.none() | _times,
    not_before=st.none() | _times,
    request_id=st.none() | _text,
    resources=st.lists(st.from_regex(r"\Ahttps://[a-z]{1,10}/[a-z0-9]{0,8}\Z"), max_size=3)
    .map(tuple),
)


@given(_fields)
def test_parse_inverts_build(msg):
    assert siwe.parse(siwe.build(msg)) == msg


def test_a_signed_message_signs_in_once(index):
    msg, text = fresh(index)
    got = check(index, text, sign_personal(KEY, text))
    assert got.address == ADDRESS and got.nonce == msg.nonce
    assert code_of(index, text, sign_personal(KEY, text)) == "siwe_nonce_used"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_byte_change_fails(index, data):
    _, text = fresh(index)
    sig = sign_personal(KEY, text)
    raw = bytearray(text.encode())
    pos = data.draw(st.integers(0, len(raw) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[pos]))
    raw[pos] = new
    try:
        changed = raw.decode()
    except UnicodeDecodeError:
        return  # not even text: no wallet could have signed it
    with pytest.raises(SiweError):
        check(index, changed, sig)
    # and the untouched message still works: the failed attempt did not burn its nonce
    check(index, text, sig)


def test_each_refusal_has_its_code(index):
    other = "0x" + "22" * 32
    _, text = fresh(index)
    assert code_of(index, text, sign_personal(other, text)) == "siwe_wrong_signer"
    _, text = fresh(index, domain="evil.example")
    assert code_of(index, text, sign_personal(KEY, text)) == "siwe_wrong_domain"
    _, text = fresh(index, uri="http://evil.example/")
    assert code_of(index, text, sign_personal(KEY, text)) == "siwe_wrong_uri"
    _, text = fresh(index, chain_id=1)
    assert code_of(index, text, sign_personal(KEY, text)) == "siwe_wrong_chain"
    past = datetime.now(UTC) - timedelta(minutes=1)
    _, text = fresh(index, expiration_time=siwe.format_time(past))
    assert code_of(index, text, sign_personal(KEY, text)) == "siwe_expired"
    future = datetime.now(UTC) + timedelta(minutes=10)
    _, text = fresh(index, issued_at=siwe.format_time(future))
    assert code_of(index, text, sign_personal(KEY, text)) == "siwe_issued_in_future"
    _, text = fresh(index, not_before=siwe.format_time(future))
    assert code_of(index, text, sign_personal(KEY, text)) == "siwe_not_yet_valid"
    _, text = fresh(index, nonce="NotIssuedByUs1")
    assert code_of(index, text, sign_personal(KEY, text)) == "siwe_unknown_nonce"
    _, text = fresh(index, address=ADDRESS.lower())
    assert code_of(index, text, sign_personal(KEY, text)) == "siwe_malformed"
    assert code_of(index, "hello", sign_personal(KEY, "hello")) == "siwe_malformed"


def test_an_expired_nonce_is_refused_and_purged(index):
    msg, text = fresh(index, expiration_time=None)
    later = datetime.now(UTC) + siwe.NONCE_TTL + timedelta(seconds=1)
    assert code_of(index, text, sign_personal(KEY, text), now=later) == "siwe_nonce_expired"
    with index.session() as s:
        siwe.issue_nonce(s, now=later)
    with index.session() as s:
        assert s.get(SiweNonce, msg.nonce) is None


def test_two_concurrent_logins_with_one_nonce_one_wins(index):
    for _ in range(5):
        _, text = fresh(index)
        sig = sign_personal(KEY, text)
        results: list[str] = []
        barrier = threading.Barrier(2)

        def login(barrier=barrier, text=text, sig=sig, results=results) -> None:
            barrier.wait()
            try:
                check(index, text, sig)
                results.append("ok")
            except SiweError as exc:
                results.append(exc.code)

        threads = [threading.Thread(target=login) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["ok", "siwe_nonce_used"]
