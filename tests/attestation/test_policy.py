"""The policy file a user edits, and a verdict that gives every reason evidence is refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from databright.attestation import (
    AttestationRefused,
    EvidenceError,
    Policy,
    PolicyError,
    check,
    local_software_policy,
    software,
    verify_evidence,
)
from databright.attestation.evidence import Claims
from databright.errors import DataBrightError
from databright.home import Home
from tests.attestation.conftest import ADDRESS, NONCE

HEX = "ab" * 32
SIMULATED_REFUSAL = ("simulated evidence (software backend, no hardware isolation) is refused: "
                     "the policy does not set allow_simulated")


def _pinned(evidence, **overrides) -> Policy:
    fields = {"allowed_measurements": (evidence.claims.measurement,),
              "allowed_signers": (evidence.claims.signer,), "allow_simulated": True}
    return Policy(**{**fields, **overrides})


def test_the_policy_file_round_trips_and_omitted_fields_take_the_defaults():
    policy = Policy(allowed_measurements=(HEX, "*"), allowed_signers=(HEX,), min_isv_svn=2,
                    accepted_tcb_statuses=("UpToDate", "SWHardeningNeeded"), allow_debug=True,
                    allow_simulated=True)
    assert Policy.from_json(policy.to_json()) == policy
    assert list(json.loads(policy.to_json())) == [
        "allowed_measurements", "allowed_signers", "min_isv_svn", "accepted_tcb_statuses",
        "allow_debug", "allow_simulated"]
    default = Policy.from_json("{}")
    assert default == Policy() and default.allow_simulated is False
    assert default.accepted_tcb_statuses == ("UpToDate",) and default.allowed_measurements == ()
    assert Policy.from_json(json.dumps({"allowed_signers": [HEX.upper()]})).allowed_signers == (
        HEX,)


@pytest.mark.parametrize("text, reason", [
    ("not json", "not JSON"), ("[]", "not a JSON object"),
    ('{"allow_simulted": true}', "unknown fields: allow_simulted"),
    ('{"allowed_measurements": "' + HEX + '"}', "must be a list"),
    ('{"allowed_measurements": ["abc"]}', "64-hex-digit"),
    ('{"allowed_signers": [1]}', "64-hex-digit"),
    ('{"min_isv_svn": -1}', "min_isv_svn"), ('{"min_isv_svn": "3"}', "min_isv_svn"),
    ('{"min_isv_svn": 1.5}', "min_isv_svn"),
    ('{"accepted_tcb_statuses": ["Uptodate"]}', "unknown TCB status"),
    ('{"accepted_tcb_statuses": ["Simulated"]}', "set allow_simulated instead"),
    ('{"allow_debug": 1}', "allow_debug must be true or false"),
    ('{"allow_simulated": "yes"}', "allow_simulated must be true or false"),
])
def test_a_bad_policy_file_is_refused_with_its_reason(text, reason):
    with pytest.raises(PolicyError, match=reason) as info:
        Policy.from_json(text)
    assert isinstance(info.value, DataBrightError)


def test_simulated_evidence_is_refused_unless_the_policy_allows_it(soft_evidence):
    pinned = _pinned(soft_evidence, allow_simulated=False)
    verdict = check(soft_evidence, pinned, enclave_address=ADDRESS, nonce=NONCE, now=0)
    assert not verdict.ok
    assert verdict.reasons == (SIMULATED_REFUSAL,)
    assert check(soft_evidence, _pinned(soft_evidence), enclave_address=ADDRESS, nonce=NONCE,
                 now=0).ok


def test_every_reason_is_given_at_once(soft_evidence):
    policy = Policy(min_isv_svn=1)
    verdict = check(soft_evidence, policy, enclave_address="0x" + "77" * 20, nonce=bytes(32),
                    now=0)
    claims = soft_evidence.claims
    mismatch = (f"REPORTDATA mismatch: it binds address 0x{'5e' * 20}, not 0x{'77' * 20}, "
                "it binds another nonce")
    assert verdict.reasons == (
        SIMULATED_REFUSAL,
        f"measurement {claims.measurement} is not an allowed measurement",
        f"signer {claims.signer} is not an allowed signer",
        "isv_svn 0 is below the minimum 1",
        mismatch,
    )
    with pytest.raises(AttestationRefused) as info:
        verdict.raise_for_refusal()
    assert info.value.reasons == list(verdict.reasons)
    assert "\n" not in str(info.value) and str(info.value).startswith("attestation refused: ")


@pytest.mark.parametrize("address, nonce, reason", [
    ("0x" + "5f" * 20, NONCE, f"it binds address 0x{'5e' * 20}, not 0x{'5f' * 20}"),
    (ADDRESS, bytes(32), "it binds another nonce"),
])
def test_a_report_data_mismatch_is_refused(soft_evidence, address, nonce, reason):
    verdict = check(soft_evidence, _pinned(soft_evidence), enclave_address=address, nonce=nonce,
                    now=0)
    assert verdict.reasons == (f"REPORTDATA mismatch: {reason}",)


def test_the_wildcard_allows_any_measurement_and_signer(soft_evidence):
    any_code = Policy(allowed_measurements=("*",), allowed_signers=("*",), allow_simulated=True)
    assert check(soft_evidence, any_code, enclave_address=ADDRESS, nonce=NONCE, now=0).ok


def test_verify_evidence_turns_garbage_into_a_verdict_but_bad_arguments_raise(soft_evidence):
    verdict = verify_evidence(b"\x00garbage", Policy(), enclave_address=ADDRESS, nonce=NONCE,
                              now=0)
    assert not verdict.ok and verdict.kind is None and "not JSON" in verdict.reasons[0]
    with pytest.raises(EvidenceError, match="nonce"):
        verify_evidence(b"\x00garbage", Policy(), enclave_address=ADDRESS, nonce=b"short", now=0)
    with pytest.raises(EvidenceError, match="enclave address"):
        verify_evidence(soft_evidence.to_bytes(), Policy(), enclave_address="bob", nonce=NONCE,
                        now=0)


_hex = st.sampled_from(["aa" * 32, "bb" * 32, "cc" * 32])
_statuses = st.sampled_from(["UpToDate", "SWHardeningNeeded", "OutOfDate", "Revoked"])


@given(measurement=_hex, signer=_hex, svn=st.integers(0, 5), debug=st.booleans(),
       status=_statuses, allowed_m=st.lists(_hex, max_size=3), allowed_s=st.lists(_hex, max_size=3),
       min_svn=st.integers(0, 5), allow_debug=st.booleans(),
       accepted=st.lists(_statuses, max_size=3))
def test_hardware_claims_pass_exactly_when_every_rule_holds(
        measurement, signer, svn, debug, status, allowed_m, allowed_s, min_svn, allow_debug,
        accepted):
    claims = Claims(measurement=measurement, signer=signer, isv_svn=svn, debug=debug,
                    tcb_status=status, report_data=bytes(64))
    policy = Policy(allowed_measurements=tuple(allowed_m), allowed_signers=tuple(allowed_s),
                    min_isv_svn=min_svn, allow_debug=allow_debug,
                    accepted_tcb_statuses=tuple(accepted))
    rules = [measurement in allowed_m, signer in allowed_s, svn >= min_svn,
             allow_debug or not debug, status in accepted]
    assert len(policy.reasons(claims, "sgx-dcap")) == rules.count(False)


def test_the_local_policy_accepts_this_installation_only(soft_evidence, home, tmp_path):
    local = local_software_policy({"workers": 3, "cap": 0.05}, home=home)
    assert local.allow_simulated
    assert check(soft_evidence, local, enclave_address=ADDRESS, nonce=NONCE, now=0).ok
    other_config = local_software_policy({"workers": 4, "cap": 0.05}, home=home)
    assert not check(soft_evidence, other_config, enclave_address=ADDRESS, nonce=NONCE, now=0).ok
    stranger = software.produce(ADDRESS, NONCE, {"workers": 3, "cap": 0.05},
                                home=Home(tmp_path / "stranger"))
    assert not check(stranger, local, enclave_address=ADDRESS, nonce=NONCE, now=0).ok


def test_a_verdict_as_json_carries_its_reasons_and_verified_claims(soft_evidence):
    verdict = check(soft_evidence, Policy(), enclave_address=ADDRESS, nonce=NONCE, now=0)
    data = json.loads(json.dumps(verdict.to_json()))
    assert data["ok"] is False and data["kind"] == "software"
    assert data["reasons"] == list(verdict.reasons)
    assert data["claims"] == soft_evidence.claims.to_json()
