"""A home with something on every page, and the web app served from it on 127.0.0.1.

``build_web_home`` makes, through the CLI: accounts alice (initiator, evaluator), bob, carol,
dave; the dataset ``digits`` (80 seed items); proposal 1 by bob, evaluated and accepted; proposal
2 by carol (some labels flipped), evaluated and open; a 1 ETH distribution; model 1 trained by
dave and registered. ``Served`` runs the app in a thread of the test process.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Self

import httpx
import uvicorn

from databright.home import Home
from databright.web.app import WebContext, create_app
from tests.cli.conftest import PASSWORD, Cli

ACCOUNTS = ("alice", "bob", "carol", "dave")


def build_web_home(root: Path, digit_folder) -> Cli:
    cli = Cli(root / "home")
    cli("init")
    for name in ACCOUNTS:
        cli("account", "new", name, "--fast-kdf")
    seed = digit_folder(root / "seed", 0, 80)
    cli("dataset", "create", "digits", "--from", str(seed), "--period", "1h", "--stake",
        "0.01eth", "--evaluator", "alice", "--quorum", "0.3", "--description",
        "Hand-written digits, 8×8 grey.", as_="alice")
    first = cli("propose", "digits", str(digit_folder(root / "b1", 80, 40)), as_="bob")
    cli("evaluate", str(first["proposal_id"]), "--post", as_="alice")
    cli("vote", str(first["proposal_id"]), "yes", as_="alice")
    cli("finalize", str(first["proposal_id"]))
    second = cli("propose", "digits", str(digit_folder(root / "b2", 120, 30, flip=0.3)),
                 as_="carol")
    cli("evaluate", str(second["proposal_id"]), "--post", as_="alice")
    cli("distribute", "digits", "1eth", as_="dave")
    cli("train", "digits", "--family", "small-cnn", "--epochs", "2", "--register", "--price",
        "0.001eth", "--royalty", "30%", "--name", "digits-cnn", as_="dave")
    cli.inputs = root
    cli.proposals = (first["proposal_id"], second["proposal_id"])
    return cli


def siwe_login(client: httpx.Client, key) -> httpx.Response:
    """Sign in over HTTP as an eth-account ``key``: nonce, the EIP-4361 text, personal_sign,
    login (the client keeps the session cookie). Returns the login answer."""
    from databright.chain.signatures import sign_personal
    from databright.market.siwe import SiweMessage, build

    fields = client.get("/api/auth/nonce").json()
    message = build(SiweMessage(domain=fields["domain"], address=key.address,
                                statement=fields["statement"], uri=fields["uri"],
                                version=fields["version"], chain_id=fields["chain_id"],
                                nonce=fields["nonce"], issued_at=fields["issued_at"],
                                expiration_time=fields["expiration_time"]))
    login = client.post("/api/auth/login", json={"message": message,
                                                 "signature": sign_personal(key.key, message)})
    assert login.status_code == 200, login.text
    return login


def copy_home(src: Path, dst: Path) -> Path:
    """A private copy of a built home (tests that write get their own)."""
    shutil.copytree(src, dst)
    return dst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """The web app of ``home`` on 127.0.0.1 in a thread; ``url``, ``ctx``, ``client``."""

    def __init__(self, home: Path, *, sync_seconds: float = 0.5) -> None:
        self.ctx = WebContext(Home(home), sync_seconds=sync_seconds)
        self.app = create_app(self.ctx)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the web app did not start")
            time.sleep(0.05)
        self.client = httpx.Client(base_url=self.url, timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)


__all__ = ["ACCOUNTS", "PASSWORD", "Served", "build_web_home", "copy_home", "free_port",
           "siwe_login"]
