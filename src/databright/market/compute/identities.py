"""Keys of the compute market kept in a home: the coordinator's enclave key and the keys of
local worker identities.

The enclave key signs receipts, attestations and nothing else; it never holds ether (an operator
account pays the gas). With the ``software`` backend it lives in a file of the home (0600), so
"enclave" means only what the evidence proves (see ``docs/attestation.md``). Local worker
identities (the embedded executor's pool) are derived from one secret of the home: identity
``i`` always has the same address, so repeated jobs find the same staked workers and the same
exposure ledger rows.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from databright.errors import ConfigError
from databright.home import Home

if TYPE_CHECKING:
    from databright.chain.accounts import Signer

__all__ = ["compute_dir", "enclave_key", "local_worker", "local_workers"]

_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def compute_dir(home: Home) -> Path:
    """The home's folder for compute-market state (keys, exposure ledger, receipts)."""
    path = home.path / "compute"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _secret_file(path: Path) -> bytes:
    """32 random bytes kept in ``path`` (created 0600 on first use, atomically)."""
    if path.exists():
        raw = path.read_text().strip()
        try:
            value = bytes.fromhex(raw)
        except ValueError:
            value = b""
        if len(value) != 32:
            raise ConfigError(f"{path} does not hold a 32-byte hex secret")
        return value
    value = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value.hex())
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)  # first writer wins; a concurrent one reads the winner's secret
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return _secret_file(path)


def _key(material: bytes) -> bytes:
    """A valid secp256k1 private key from 32 bytes of material (re-hashed until in range)."""
    key = hashlib.sha256(material).digest()
    while not 0 < int.from_bytes(key, "big") < _SECP256K1_N:
        key = hashlib.sha256(key).digest()
    return key


def enclave_key(home: Home) -> Signer:
    """The coordinator's enclave key of this home (created on first use)."""
    from databright.chain.accounts import signer_from_key

    return signer_from_key(_key(b"databright-enclave|" + _secret_file(
        compute_dir(home) / "enclave.key")))


def local_worker(home: Home, index: int) -> Signer:
    """Local worker identity ``index`` (0-based) of this home."""
    from databright.chain.accounts import signer_from_key

    secret = _secret_file(compute_dir(home) / "local-workers.secret")
    return signer_from_key(_key(b"databright-worker|" + secret + index.to_bytes(4, "big")))


def local_workers(home: Home, count: int) -> list[Signer]:
    """The first ``count`` local worker identities."""
    return [local_worker(home, i) for i in range(count)]
