"""Evidence bytes: one canonical form, REPORTDATA's layout, untrusted bytes refused with reasons."""

from __future__ import annotations

import hashlib
import json

import pytest

from databright.attestation import Evidence, EvidenceError, report_data
from databright.attestation.evidence import MAX_EVIDENCE_BYTES, registration_nonce
from databright.errors import DataBrightError
from tests.attestation.conftest import ADDRESS, NONCE


def test_report_data_is_address_then_nonce_then_the_tag():
    data = report_data(ADDRESS, NONCE)
    assert len(data) == 64
    assert data[:20] == bytes.fromhex("5e" * 20)
    assert data[20:52] == NONCE
    assert data[52:] == b"databright/1"
    # Hex and bytes, any case, name the same binding.
    assert report_data(ADDRESS.upper().replace("0X", "0x"), "0x" + NONCE.hex()) == data
    assert report_data(bytes.fromhex("5e" * 20), NONCE) == data


@pytest.mark.parametrize("address, nonce", [
    ("0x1234", NONCE), ("0x" + "zz" * 20, NONCE), (b"\x00" * 19, NONCE),
    (ADDRESS, b"\x00" * 31), (ADDRESS, "ab" * 31),
])
def test_report_data_refuses_a_malformed_address_or_nonce(address, nonce):
    with pytest.raises(EvidenceError):
        report_data(address, nonce)


def test_the_registration_nonce_is_the_documented_hash_and_differs_per_deployment():
    market = "0x" + "12" * 20
    expected = hashlib.sha256(b"databright-coordinator-registration/1" + (31337).to_bytes(32, "big")
                              + bytes.fromhex("12" * 20)).digest()
    assert registration_nonce(31337, market) == expected
    assert registration_nonce(1, market) != expected
    assert registration_nonce(31337, "0x" + "13" * 20) != expected
    with pytest.raises(EvidenceError):
        registration_nonce(-1, market)


def test_canonical_bytes_round_trip(soft_evidence):
    raw = soft_evidence.to_bytes()
    assert Evidence.from_bytes(raw) == soft_evidence
    assert Evidence.from_bytes(raw).to_bytes() == raw
    assert b" " not in raw and raw.isascii()


def _edit(raw: bytes, change) -> bytes:
    data = json.loads(raw)
    change(data)
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize("change, reason", [
    (lambda d: d.update(format="databright-evidence/2"), "evidence format"),
    (lambda d: d.update(kind="tdx"), "unknown evidence kind"),
    (lambda d: d.pop("quote"), "evidence lacks quote"),
    (lambda d: d.update(extra=1), "unknown fields: extra"),
    (lambda d: d.update(quote="abc"), "quote is not lowercase hex"),
    (lambda d: d.update(quote=d["quote"].upper()), "quote is not lowercase hex"),
    (lambda d: d["claims"].update(isv_svn=70000), "isv_svn"),
    (lambda d: d["claims"].update(isv_svn=True), "isv_svn"),
    (lambda d: d["claims"].update(debug=0), "debug"),
    (lambda d: d["claims"].update(measurement="00" * 31), "measurement"),
    (lambda d: d["claims"].update(report_data="00" * 63), "report_data"),
    (lambda d: d["claims"].update(tcb_status="Fine"), "unknown tcb_status"),
    (lambda d: d["claims"].update(advisory_ids=[1]), "advisory_ids"),
    (lambda d: d.update(collateral={"tcb_info": "{}"}), "collateral"),
])
def test_malformed_evidence_is_refused_with_its_reason(soft_evidence, change, reason):
    raw = _edit(soft_evidence.to_bytes(), change)
    with pytest.raises(EvidenceError, match=reason) as info:
        Evidence.from_bytes(raw)
    assert isinstance(info.value, DataBrightError)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("raw, reason", [
    (b"", "not JSON"), (b"\xff\xfe", "not JSON"), (b"[]", "not a JSON object"),
    (b'{"a":NaN}', "not JSON"), (b"[" * 100_000, "not JSON"),
    # Linear-time checks: an unterminated string of escaped quotes once took minutes.
    (b'"' + b'\\"' * 100_000, "not JSON"),
    (b'{"kind":"software","kind":"software"}', "duplicate key"),
    (b"{" + b" " * MAX_EVIDENCE_BYTES + b"}", "byte limit"),
])
def test_garbage_is_refused_not_asserted(raw, reason):
    with pytest.raises(EvidenceError, match=reason):
        Evidence.from_bytes(raw)


def test_a_non_canonical_spelling_of_valid_evidence_is_refused(soft_evidence):
    # One evidence, one CID: whitespace or key order would give the same claims another CID.
    pretty = json.dumps(json.loads(soft_evidence.to_bytes()), indent=1).encode()
    with pytest.raises(EvidenceError, match="canonical form"):
        Evidence.from_bytes(pretty)
