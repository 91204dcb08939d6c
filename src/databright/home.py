"""The home folder: one deployment's config, chain state, blob store, keystore and index.

Layout (``$DATABRIGHT_HOME``, default ``~/.databright``)::

    config.json        chain URL or "embedded", contract addresses, store URL, DB URL, account
    chain/             the embedded chain's database (chain.sqlite) and its lock
    store/             the local blob store (when the store URL is not remote)
    keystore/          encrypted key files (standard Ethereum keystore JSON), one per account
    index.sqlite       the SQLite index (when the DB URL is not remote)
    compute/           the coordinator's enclave key, local worker identities' secret, the
                       exposure ledger (exposure.sqlite) and job receipts (receipts/job-N.json)
    attestation/       the software attestation backend's platform key (0600)
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from databright.errors import ConfigError

EMBEDDED = "embedded"


def default_home() -> Path:
    """The home named by ``$DATABRIGHT_HOME``, else ``~/.databright``."""
    env = os.environ.get("DATABRIGHT_HOME")
    return Path(env).expanduser() if env else Path.home() / ".databright"


@dataclass
class Config:
    """What ``config.json`` holds."""

    chain: str = EMBEDDED
    chain_id: int | None = None
    contracts: dict[str, str] = field(default_factory=dict)
    store: str | None = None
    db: str | None = None
    default_account: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Home:
    """Paths and config of one home folder."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path).expanduser().resolve() if path else default_home().resolve()

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def chain_dir(self) -> Path:
        return self.path / "chain"

    @property
    def store_dir(self) -> Path:
        return self.path / "store"

    @property
    def keystore_dir(self) -> Path:
        return self.path / "keystore"

    @property
    def index_path(self) -> Path:
        return self.path / "index.sqlite"

    def exists(self) -> bool:
        return self.config_path.is_file()

    def load(self) -> Config:
        """Read the config, or say how to create one."""
        if not self.exists():
            raise ConfigError(f"no DataBright home at {self.path}: run `databright init` first")
        try:
            raw = json.loads(self.config_path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {self.config_path}: {exc}") from exc
        known = {k: raw.pop(k) for k in list(raw) if k in Config.__dataclass_fields__}
        return Config(**known, extra=raw)

    def save(self, config: Config) -> None:
        """Write the config atomically (temp file, fsync, rename)."""
        self.path.mkdir(parents=True, exist_ok=True)
        data = asdict(config)
        data.update(data.pop("extra"))
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".config.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.config_path)

    def store_url(self, config: Config) -> str:
        return config.store or str(self.store_dir)

    def db_url(self, config: Config) -> str:
        return config.db or f"sqlite:///{self.index_path}"
