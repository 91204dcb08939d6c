"""A home with a served model: a digits dataset, a small CNN trained on it, registered and
attested, and a consumer with funds. Shared by the channel, server and CLI tests."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from databright.chain.model_registry import sign
from databright.home import Home
from databright.market import Deployment, Rules, datasets, deployment
from databright.storage.cid import cid_of_bytes
from databright.training import Record
from databright.training.api import train_dataset

PASSWORD = "pw"
PRICE = 10**12
ROYALTY_BPS = 3_000
FEE = 10**15
NAMES = ("alice", "dev", "consumer", "mallory", "erin")


@dataclass
class World:
    root: Path
    home: Home
    dataset_id: int
    model_id: int
    other_model_id: int
    table_model_id: int
    files: list[Path]
    accounts: dict[str, Any] = field(default_factory=dict)

    def dep(self) -> Deployment:
        return Deployment(self.home)

    def signer(self, name: str) -> Any:
        with self.dep() as dep:
            return dep.keystore.unlock(name, PASSWORD)


def loader(data: bytes) -> Any:
    """A record's loader returning ``data``."""
    return lambda: data


def _records(folder: Path) -> list[Record]:
    out = []
    for path in sorted(folder.rglob("*.png")):
        data = path.read_bytes()
        out.append(Record(cid_of_bytes(data), path.parent.name, "image/png", loader(data)))
    return out


def build_world(root: Path, digit_folder: Any) -> World:
    home = Home(root / "home")
    deployment.init_home(home)
    with Deployment(home) as dep:
        for name in NAMES:
            deployment.new_account(dep, name, PASSWORD, fast_kdf=True)
        acc = {n: dep.keystore.unlock(n, PASSWORD) for n in NAMES}
        seed = digit_folder(root / "seed", 0, 60)
        datasets.create_dataset(
            dep, acc["alice"], "digits", seed,
            rules=Rules(voting_period=3600, evaluator="alice", training_fee=FEE,
                        min_royalty_bps=2_000))
        ds_id = datasets.dataset_id(dep, "digits")
        train = _records(seed)
        val = _records(digit_folder(root / "val", 60, 20))
        result = train_dataset(train, val, "small-cnn", {"epochs": 4, "size": 16},
                               store=dep.store)
        assert result.cid and result.sha256
        ids = []
        for name in ("digits-cnn", "digits-cnn-b"):
            model_id, _ = dep.registry.register(
                acc["dev"], ds_id, name, result.checkpoint.program_digest, PRICE, ROYALTY_BPS,
                value=FEE)
            att = dep.registry.attestation(model_id, result.sha256, 1, result.accuracy_bps)
            cp, _ = dep.registry.submit_checkpoint(
                acc["dev"], model_id, result.cid, result.sha256, 1, result.accuracy_bps,
                sign(att, acc["alice"]), value=FEE)
            assert cp.attested
            ids.append(model_id)
        # a table model (logreg on the same digits as 64 pixel columns)
        from tests.training.conftest import digit_rows

        rows = train_dataset(digit_rows(0, 200), digit_rows(200, 50), "logreg", {"epochs": 20},
                             store=dep.store)
        table_id, _ = dep.registry.register(acc["dev"], ds_id, "digits-rows",
                                            rows.checkpoint.program_digest, PRICE, ROYALTY_BPS,
                                            value=FEE)
        att = dep.registry.attestation(table_id, rows.sha256, 1, rows.accuracy_bps)
        dep.registry.submit_checkpoint(acc["dev"], table_id, rows.cid, rows.sha256, 1,
                                       rows.accuracy_bps, sign(att, acc["alice"]), value=FEE)
    files = sorted((root / "val").rglob("*.png"))
    return World(root, home, ds_id, ids[0], ids[1], table_id, files, acc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningServer:
    """uvicorn on a free 127.0.0.1 port in a thread of the test process."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the prediction server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=120)
        assert not self.thread.is_alive(), "the prediction server did not stop"

    def __exit__(self, *exc: object) -> None:
        if self.thread.is_alive():
            self.stop()
