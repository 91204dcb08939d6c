"""The software backend: what is measured, the platform key, and quotes nobody can alter."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from databright.attestation import (
    AttestationError,
    Evidence,
    EvidenceError,
    Policy,
    software,
    verify_evidence,
)
from databright.attestation.evidence import report_data
from databright.attestation.software import QUOTE_SIZE, code_files, measure, platform_key
from databright.home import Home
from tests.attestation.conftest import ADDRESS, NONCE

CONFIG = {"workers": 3, "cap": 0.05}


def _package(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    (root / "sub" / "__pycache__").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "b.py").write_text("B = 1\n")
    (root / "a.py").write_text("A = 1\n")
    (root / "sub" / "__pycache__" / "b.cpython-311.py").write_text("junk")
    (root / "notes.txt").write_text("not code")
    return root


def _accepting(evidence: Evidence) -> Policy:
    return Policy(allowed_measurements=(evidence.claims.measurement,),
                  allowed_signers=(evidence.claims.signer,), allow_simulated=True)


def test_the_measured_files_are_the_package_python_files_sorted(tmp_path):
    assert code_files(_package(tmp_path)) == ["__init__.py", "a.py", "sub/b.py"]
    installed = code_files()
    assert "attestation/software.py" in installed and "compute/__init__.py" in installed
    assert installed == sorted(installed)


def test_the_measurement_is_the_documented_hash(tmp_path):
    root = _package(tmp_path)
    text = b"databright-software-measurement/1\n"
    for rel in ("__init__.py", "a.py", "sub/b.py"):
        text += f"{hashlib.sha256((root / rel).read_bytes()).hexdigest()}  {rel}\n".encode()
    text += b'config {"cap":0.05,"workers":3}\n'
    assert measure(CONFIG, root).digest == hashlib.sha256(text).hexdigest()


def test_the_measurement_follows_every_code_byte_and_the_config(tmp_path):
    root = _package(tmp_path)
    before = measure(CONFIG, root).digest
    assert measure(dict(reversed(list(CONFIG.items()))), root).digest == before  # canonical JSON
    assert measure({**CONFIG, "cap": 0.04}, root).digest != before
    (root / "notes.txt").write_text("changed")  # not code: not measured
    assert measure(CONFIG, root).digest == before
    (root / "sub" / "b.py").write_text("B = 2\n")
    assert measure(CONFIG, root).digest != before
    (root / "sub" / "b.py").write_text("B = 1\n")
    (root / "c.py").write_text("")
    assert measure(CONFIG, root).digest != before


def test_a_config_that_is_not_json_is_refused(tmp_path):
    root = _package(tmp_path)
    with pytest.raises(AttestationError, match="not JSON data"):
        measure({"x": float("nan")}, root)
    with pytest.raises(AttestationError, match="not JSON data"):
        measure({"x": object()}, root)


def test_the_platform_key_is_created_once_private_and_reused(home):
    key = platform_key(home)
    path = home.path / "attestation" / "platform-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert platform_key(home).key_id == key.key_id
    assert Home(home.path.parent / "other").path != home.path
    assert platform_key(Home(home.path.parent / "other")).key_id != key.key_id


def test_processes_creating_the_key_at_once_agree_on_one(home):
    code = ("import sys; from databright.home import Home; "
            "from databright.attestation.software import platform_key; "
            "print(platform_key(Home(sys.argv[1])).key_id)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(home.path)], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    ids = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(ids) == 1 and len(ids.pop()) == 64


def test_a_key_readable_by_others_or_malformed_is_refused(home):
    platform_key(home)
    path = home.path / "attestation" / "platform-key"
    path.chmod(0o644)
    with pytest.raises(AttestationError, match="readable by others"):
        platform_key(home)
    path.chmod(0o600)
    path.write_text("00" * 32 + "\n")  # zero is not a secp256k1 secret
    with pytest.raises(AttestationError, match="not a secp256k1 secret"):
        platform_key(home)


def test_produced_evidence_claims_this_installation(soft_evidence, home):
    claims = soft_evidence.claims
    assert soft_evidence.kind == "software" and len(soft_evidence.quote) == QUOTE_SIZE
    assert claims.measurement == measure(CONFIG).digest
    assert claims.signer == platform_key(home).key_id
    assert claims.tcb_status == "Simulated" and not claims.debug and claims.isv_svn == 0
    assert claims.report_data == report_data(ADDRESS, NONCE)
    assert software.verify(Evidence.from_bytes(soft_evidence.to_bytes())) == claims


def test_claims_that_differ_from_the_signed_quote_are_refused(soft_evidence):
    forged = replace(soft_evidence, claims=replace(soft_evidence.claims, isv_svn=9))
    with pytest.raises(EvidenceError, match="claims differ"):
        software.verify(forged)
    verdict = verify_evidence(forged.to_bytes(), _accepting(forged), enclave_address=ADDRESS,
                              nonce=NONCE, now=0)
    assert not verdict.ok and verdict.claims is None


def test_another_key_cannot_sign_for_this_installation(soft_evidence, tmp_path):
    # Anyone can make software evidence with the same measurement, but with their own key: a
    # policy that pins this installation's key refuses it.
    other = software.produce(ADDRESS, NONCE, CONFIG, home=Home(tmp_path / "elsewhere"))
    assert other.claims.measurement == soft_evidence.claims.measurement
    verdict = verify_evidence(other.to_bytes(), _accepting(soft_evidence),
                              enclave_address=ADDRESS, nonce=NONCE, now=0)
    assert verdict.reasons == (f"signer {other.claims.signer} is not an allowed signer",)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_every_single_bit_flip_of_the_quote_is_refused(soft_evidence):
    policy = _accepting(soft_evidence)
    assert verify_evidence(soft_evidence.to_bytes(), policy, enclave_address=ADDRESS,
                           nonce=NONCE, now=0).ok
    for bit in range(QUOTE_SIZE * 8):
        flipped = _flip(soft_evidence.quote, bit)
        # Even with the claims rewritten to match the flipped quote, the signature fails.
        forged = Evidence(kind="software", quote=flipped, claims=software._claims(flipped))
        with pytest.raises(EvidenceError):
            software.verify(forged)
        assert not verify_evidence(forged.to_bytes(), policy, enclave_address=ADDRESS,
                                   nonce=NONCE, now=0).ok


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_bit_flip_of_the_evidence_bytes_is_refused(soft_evidence, data):
    raw = soft_evidence.to_bytes()
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    verdict = verify_evidence(_flip(raw, bit), _accepting(soft_evidence),
                              enclave_address=ADDRESS, nonce=NONCE, now=0)
    assert not verdict.ok
    assert all("\n" not in reason for reason in verdict.reasons)
