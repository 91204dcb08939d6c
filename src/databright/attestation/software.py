"""The software attestation backend: a signed measurement of the coordinator's code and config.

No hardware is involved. The evidence says: "the holder of this platform key claims it runs the
code and config with this measurement, and binds this enclave address and nonce". A verifier that
pins the platform key's id and the measurement learns which installation speaks and what it
claims; it learns nothing about isolation (docs/attestation.md).

Measurement (sha256, hex) of the bytes::

    b"databright-software-measurement/1\\n"
    + for each code file, sorted by relative path: f"{sha256 hex}  {relative path}\\n"
    + b"config " + canonical JSON of the config + b"\\n"

The code files are every ``*.py`` file of the installed ``databright`` package (the folder of
``databright/__init__.py``), relative POSIX paths, ``__pycache__`` skipped. The file lines are
``sha256sum``'s own format, so ``cd src/databright && find . -name '*.py' ... | sha256sum`` can
reproduce them.

Quote (204 bytes, fixed layout)::

    0    8   magic b"DBSWQ\\x00\\x00\\x01"
    8   32   measurement
    40  33   platform public key (secp256k1, compressed)
    73   2   isv_svn (big-endian)
    75   1   flags (bit 0: debug; the other bits are zero)
    76  64   REPORTDATA
    140 64   signature: ECDSA secp256k1 (r || s, low s) over sha256(bytes 0..140)

The platform key is a secp256k1 secret kept in ``<home>/attestation/platform-key`` (64 hex digits
and a newline, mode 0600), created on first use.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import coincurve
from coincurve.ecdsa import cdata_to_der, der_to_cdata, deserialize_compact, serialize_compact

from databright.attestation.errors import AttestationError, EvidenceError
from databright.attestation.evidence import SIMULATED, Claims, Evidence, canonical_json, report_data
from databright.home import Home

__all__ = [
    "KIND", "MAGIC", "QUOTE_SIZE", "Measurement", "PlatformKey", "code_files", "measure",
    "platform_key", "produce", "verify",
]

KIND = "software"
MAGIC = b"DBSWQ\x00\x00\x01"
_BODY = struct.Struct(">8s32s33sHB64s")  # magic, measurement, public key, svn, flags, report data
QUOTE_SIZE = _BODY.size + 64
_MEASUREMENT_PREFIX = b"databright-software-measurement/1\n"
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Measurement:
    """A software measurement and what went into it."""

    digest: str
    files: tuple[tuple[str, str], ...]  # (relative path, sha256 hex), sorted by path
    config: bytes  # canonical JSON


def code_files(root: Path | None = None) -> list[str]:
    """The measured files: every ``*.py`` under the package root, relative POSIX paths, sorted."""
    base = (root or _PACKAGE_ROOT).resolve()
    found = [p.relative_to(base).as_posix() for p in base.rglob("*.py")
             if "__pycache__" not in p.relative_to(base).parts and p.is_file()]
    return sorted(found)


def measure(config: Mapping[str, Any], root: Path | None = None) -> Measurement:
    """The measurement of the code under ``root`` (default: the installed package) and ``config``.

    Raises:
        AttestationError: the config is not JSON data.
    """
    base = (root or _PACKAGE_ROOT).resolve()
    try:
        config_bytes = canonical_json(dict(config))
    except (TypeError, ValueError) as exc:
        raise AttestationError(f"the coordinator config is not JSON data: {exc}") from None
    files = tuple((rel, hashlib.sha256((base / rel).read_bytes()).hexdigest())
                  for rel in code_files(base))
    h = hashlib.sha256(_MEASUREMENT_PREFIX)
    for rel, digest in files:
        h.update(f"{digest}  {rel}\n".encode())
    h.update(b"config " + config_bytes + b"\n")
    return Measurement(digest=h.hexdigest(), files=files, config=config_bytes)


class PlatformKey:
    """The per-installation platform key that signs software quotes."""

    def __init__(self, secret: bytes) -> None:
        self._key = coincurve.PrivateKey(secret)

    @property
    def public_key(self) -> bytes:
        """The compressed secp256k1 public key (33 bytes)."""
        return self._key.public_key.format(compressed=True)

    @property
    def key_id(self) -> str:
        """The platform key's id: sha256 of its compressed public key, hex (the claims' signer)."""
        return key_id(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """64-byte compact ECDSA signature (r || s, low s) over sha256(message)."""
        return bytes(serialize_compact(der_to_cdata(self._key.sign(message))))


def key_id(public_key: bytes) -> str:
    """sha256 of a compressed public key, hex."""
    return hashlib.sha256(public_key).hexdigest()


def platform_key(home: Home | None = None) -> PlatformKey:
    """The home's platform key, created (0600, atomically) on first use.

    Raises:
        AttestationError: the key file is unreadable, malformed, or readable by others.
    """
    path = _key_path(home or Home())
    if not path.exists():
        _create_key(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise AttestationError(f"cannot read the platform key {path}: {exc}") from None
    if mode & 0o077:
        raise AttestationError(f"the platform key {path} is readable by others "
                               f"(mode {mode & 0o777:o}): `chmod 600` it")
    try:
        return PlatformKey(bytes.fromhex(text))
    except ValueError:
        raise AttestationError(f"the platform key {path} is not a secp256k1 secret "
                               "(64 hex digits)") from None


def produce(enclave_address: bytes | str, nonce: bytes | str, config: Mapping[str, Any], *,
            home: Home | None = None, root: Path | None = None, isv_svn: int = 0) -> Evidence:
    """Software evidence for this installation's code and ``config``, binding the address and
    nonce (REPORTDATA, see :func:`databright.attestation.evidence.report_data`)."""
    if not 0 <= isv_svn <= 0xFFFF:
        raise AttestationError("isv_svn is a 16-bit number")
    key = platform_key(home)
    digest = measure(config, root).digest
    body = _BODY.pack(MAGIC, bytes.fromhex(digest), key.public_key, isv_svn, 0,
                      report_data(enclave_address, nonce))
    quote = body + key.sign(body)
    return Evidence(kind=KIND, quote=quote, claims=_claims(quote))


def verify(evidence: Evidence) -> Claims:
    """The claims of a software quote whose signature holds and whose recorded claims match it.

    Raises:
        EvidenceError: the quote is malformed, its signature fails, or the claims differ.
    """
    if evidence.kind != KIND:
        raise EvidenceError(f"not software evidence: {evidence.kind}")
    quote = evidence.quote
    if len(quote) != QUOTE_SIZE:
        raise EvidenceError(f"software quote is {len(quote)} bytes, not {QUOTE_SIZE}")
    magic, _, public_key, _, flags, _ = _BODY.unpack_from(quote)
    if magic != MAGIC:
        raise EvidenceError("software quote: unknown magic or version")
    if flags & ~1:
        raise EvidenceError(f"software quote: reserved flag bits set ({flags:#04x})")
    body, signature = quote[:_BODY.size], quote[_BODY.size:]
    try:
        pub = coincurve.PublicKey(public_key)
        der = cdata_to_der(deserialize_compact(signature))
        good = pub.verify(der, body)
    except (ValueError, TypeError):
        good = False
    if not good:
        raise EvidenceError("software quote: the platform key's signature does not verify")
    claims = _claims(quote)
    if claims != evidence.claims:
        raise EvidenceError("software evidence: its claims differ from its signed quote")
    return claims


def _claims(quote: bytes) -> Claims:
    _, measurement, public_key, svn, flags, data = _BODY.unpack_from(quote)
    return Claims(measurement=measurement.hex(), signer=key_id(public_key), isv_svn=svn,
                  debug=bool(flags & 1), tcb_status=SIMULATED, report_data=data)


def _key_path(home: Home) -> Path:
    return home.path / "attestation" / "platform-key"


def _create_key(path: Path) -> None:
    # Write a fresh secret to a 0600 temp file, then hard-link it into place: link fails if the
    # key exists, so two processes creating it at once agree on one key.
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = coincurve.PrivateKey().secret
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".platform-key.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:  # mkstemp creates the file 0600
            fh.write(secret.hex() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
