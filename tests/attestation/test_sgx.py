"""The sgx-dcap backend on a real DCAP quote: verified inside its collateral's validity, refused
with one bit flipped, refused at today's date."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from databright.attestation import Evidence, EvidenceError, Policy, sgx, verify_evidence
from tests.attestation.conftest import ADDRESS, NONCE

MRENCLAVE = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
MRSIGNER = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
REPORT_DATA_OFFSET = 48 + 320  # quote header, then REPORTDATA inside the enclave report
PERMISSIVE = Policy(allowed_measurements=(MRENCLAVE,), allowed_signers=(MRSIGNER,),
                    accepted_tcb_statuses=("ConfigurationAndSWHardeningNeeded",))


def _flip(quote: bytes, offset: int, mask: int = 1) -> bytes:
    out = bytearray(quote)
    out[offset] ^= mask
    return bytes(out)


def test_the_sample_quote_verifies_inside_its_collateral_validity(
        sgx_quote, sgx_collateral, collateral_time):
    evidence = sgx.evidence_from_quote(sgx_quote, collateral=sgx_collateral, now=collateral_time)
    claims = sgx.verify(evidence, now=collateral_time)
    assert claims.tcb_status == "ConfigurationAndSWHardeningNeeded"
    assert claims.measurement == MRENCLAVE and claims.signer == MRSIGNER
    assert claims.isv_svn == 0 and claims.debug is False
    assert claims.report_data == b"Hello, world!".ljust(64, b"\0")
    assert claims.advisory_ids == ("INTEL-SA-00289", "INTEL-SA-00615")
    assert claims == evidence.claims


def test_stored_evidence_carries_its_collateral_and_verifies_offline(
        sgx_quote, sgx_collateral, collateral_time):
    evidence = sgx.evidence_from_quote(sgx_quote, collateral=sgx_collateral, now=collateral_time)
    raw = evidence.to_bytes()
    assert Evidence.from_bytes(raw) == evidence
    verdict = verify_evidence(raw, PERMISSIVE, enclave_address=ADDRESS, nonce=NONCE,
                              now=collateral_time)
    # The sample enclave bound "Hello, world!", not a DataBright address and nonce: that is the
    # one and only reason it is refused.
    assert verdict.claims == evidence.claims
    hello = b"Hello, world!".ljust(20, b"\0").hex()
    mismatch = (f"REPORTDATA mismatch: it binds address 0x{hello}, not 0x{'5e' * 20}, "
                "it binds another nonce, it is not in the databright/1 layout")
    assert verdict.reasons == (mismatch,)


def test_one_bit_flipped_in_report_data_is_refused(sgx_quote, sgx_collateral, collateral_time):
    flipped = _flip(sgx_quote, REPORT_DATA_OFFSET)
    assert sgx.parse_claims(flipped)["report_data"] != sgx.parse_claims(sgx_quote)["report_data"]
    with pytest.raises(EvidenceError, match="does not verify"):
        sgx.evidence_from_quote(flipped, collateral=sgx_collateral, now=collateral_time)
    good = sgx.evidence_from_quote(sgx_quote, collateral=sgx_collateral, now=collateral_time)
    # Claims rewritten to match the flipped quote: the quote's signature still fails.
    forged = replace(good, quote=flipped, claims=replace(
        good.claims, report_data=bytes.fromhex(sgx.parse_claims(flipped)["report_data"])))
    verdict = verify_evidence(forged.to_bytes(), PERMISSIVE, enclave_address=ADDRESS,
                              nonce=NONCE, now=collateral_time)
    assert not verdict.ok and verdict.claims is None
    assert "ISV enclave report signature is invalid" in verdict.reasons[0]


@pytest.mark.parametrize("offset", [48 + 64, 48 + 128, 48 + 258, 48 + 48])
def test_a_flipped_measurement_signer_svn_or_attribute_is_refused(
        sgx_quote, sgx_collateral, collateral_time, offset):
    with pytest.raises(EvidenceError, match="does not verify"):
        sgx.evidence_from_quote(_flip(sgx_quote, offset, 0x02), collateral=sgx_collateral,
                                now=collateral_time)


def test_now_may_be_an_aware_datetime_but_not_a_naive_one(
        sgx_quote, sgx_collateral, collateral_time):
    raw = sgx.evidence_from_quote(sgx_quote, collateral=sgx_collateral,
                                  now=collateral_time).to_bytes()
    aware = datetime.fromtimestamp(collateral_time, UTC)
    verdict = verify_evidence(raw, PERMISSIVE, enclave_address=ADDRESS, nonce=NONCE, now=aware)
    assert verdict.claims is not None and verdict.reasons[0].startswith("REPORTDATA mismatch")
    with pytest.raises(EvidenceError, match="timezone-aware"):
        verify_evidence(raw, PERMISSIVE, enclave_address=ADDRESS, nonce=NONCE,
                        now=aware.replace(tzinfo=None))


def test_the_sample_quote_is_refused_at_todays_date(sgx_quote, sgx_collateral, collateral_time):
    evidence = sgx.evidence_from_quote(sgx_quote, collateral=sgx_collateral, now=collateral_time)
    verdict = verify_evidence(evidence.to_bytes(), PERMISSIVE, enclave_address=ADDRESS,
                              nonce=NONCE, now=int(time.time()))
    assert not verdict.ok and verdict.claims is None
    assert "Expired" in verdict.reasons[0]


def test_evidence_without_collateral_needs_it_passed(sgx_quote, sgx_collateral, collateral_time):
    bare = sgx.evidence_from_quote(sgx_quote, collateral=sgx_collateral, now=collateral_time,
                                   embed_collateral=False)
    with pytest.raises(EvidenceError, match="no collateral"):
        sgx.verify(bare, now=collateral_time)
    assert sgx.verify(bare, now=collateral_time, collateral=sgx_collateral) == bare.claims
    broken = json.loads(sgx_collateral)
    broken.pop("tcb_info")
    with pytest.raises(EvidenceError, match="unreadable collateral"):
        sgx.verify(bare, now=collateral_time, collateral=broken)


def test_recorded_claims_that_differ_from_the_quote_are_refused(
        sgx_quote, sgx_collateral, collateral_time):
    good = sgx.evidence_from_quote(sgx_quote, collateral=sgx_collateral, now=collateral_time)
    for change in ({"measurement": "00" * 32}, {"signer": "11" * 32}, {"isv_svn": 3},
                   {"debug": True}, {"report_data": bytes(64)}):
        forged = replace(good, claims=replace(good.claims, **change))
        with pytest.raises(EvidenceError, match=f"claimed {next(iter(change))} differs"):
            sgx.verify(forged, now=collateral_time)


def test_the_policy_rules_apply_to_verified_sgx_claims(sgx_quote, sgx_collateral, collateral_time):
    raw = sgx.evidence_from_quote(sgx_quote, collateral=sgx_collateral,
                                  now=collateral_time).to_bytes()
    verdict = verify_evidence(raw, Policy(min_isv_svn=1), enclave_address=ADDRESS, nonce=NONCE,
                              now=collateral_time)
    assert verdict.reasons[:4] == (
        f"measurement {MRENCLAVE} is not an allowed measurement",
        f"signer {MRSIGNER} is not an allowed signer",
        "isv_svn 0 is below the minimum 1",
        "TCB status ConfigurationAndSWHardeningNeeded is not accepted (accepted: UpToDate)",
    )
    assert verdict.reasons[4].startswith("REPORTDATA mismatch")


@pytest.mark.parametrize("quote, reason", [
    (b"", "too short"), (bytes(600), "not a DCAP quote"), (b"\x03\x00" + bytes(598), "DCAP"),
])
def test_garbage_quotes_are_refused(quote, reason, sgx_collateral, collateral_time):
    with pytest.raises(EvidenceError, match=reason):
        sgx.evidence_from_quote(quote, collateral=sgx_collateral, now=collateral_time)


# The signed part of a v3 quote: header, enclave report, its ECDSA signature, the attestation
# key, the QE report and its signature, the QE authentication data and the certification data's
# type (bytes 0..1047). Every bit there is bound: checked exhaustively once (14 s), sampled here.
SIGNED_BYTES = 1048


@settings(max_examples=300, deadline=None)
@given(bit=st.integers(0, SIGNED_BYTES * 8 - 1))
def test_any_bit_flip_in_the_signed_part_of_the_quote_is_refused(
        sgx_quote, sgx_collateral, collateral_time, bit):
    with pytest.raises(EvidenceError):
        sgx.evidence_from_quote(_flip(sgx_quote, bit // 8, 1 << (bit % 8)),
                                collateral=sgx_collateral, now=collateral_time)
