"""`databright serve --workers 2` as deployed behind a proxy: a real node (anvil) and a
PostgreSQL index; two server processes share sessions and the discussion through the database,
so a sign-in made on one is honoured by the other, and both show the same comment. On the
embedded chain several workers are refused (it has one writer).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from databright.chain.signatures import sign_personal
from tests.chain.conftest import anvil_url  # noqa: F401 - the session-wide anvil fixture
from tests.cli.conftest import Cli
from tests.cli.test_anvil import DEV_KEYS
from tests.index.conftest import fresh_database_url
from tests.web.web_world import free_port, siwe_login

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pg_home(tmp_path_factory, anvil_url, digit_folder):  # noqa: F811
    root = tmp_path_factory.mktemp("pg-home")
    url, drop = fresh_database_url("postgresql", root)
    cli = Cli(root / "home")
    cli("init", "--chain", anvil_url, "--db", url,
        env={"DATABRIGHT_DEPLOYER_KEY": DEV_KEYS[0]})
    cli("account", "import", "alice", env={"DATABRIGHT_PRIVATE_KEY": DEV_KEYS[1]})
    seed = digit_folder(root / "seed", 0, 40)
    cli("dataset", "create", "pgdigits", "--from", str(seed), "--period", "1h", as_="alice")
    yield cli
    drop()  # type: ignore[operator]


def _serve(home: Path, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "databright.cli", "serve", "--home", str(home), "--port",
         str(port), "--workers", str(workers), "--page-cache-ttl", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, f"http://127.0.0.1:{port}"


def test_two_workers_share_sessions_and_comments(pg_home):
    proc, url = _serve(pg_home.home, 2)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode()[-2000:] if proc.stderr else "")
            try:
                if httpx.get(url + "/api/datasets", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.3)
        key = Account.create()
        # one connection each: the kernel spreads connections over the two processes
        clients = [httpx.Client(base_url=url, timeout=30) for _ in range(8)]
        csrf = siwe_login(clients[0], key).json()["csrf"]
        cookie = clients[0].cookies
        seen = set()
        for c in clients:
            c.cookies = cookie
            me = c.get("/api/auth/me").json()
            assert me["signed_in"] and me["address"] == key.address
            seen.add(c.get("/api/datasets").headers.get("x-served-by"))
        body = "Seen from both processes."
        draft = clients[1].post("/api/comments/draft", headers={"X-CSRF-Token": csrf}, json={
            "target": "dataset:pgdigits", "body": body})
        assert draft.status_code == 200, draft.text
        message = draft.json()["message"]
        posted = clients[1].post("/api/datasets/pgdigits/comments",
                                 headers={"X-CSRF-Token": csrf},
                                 json={"body": body, "message": message,
                                       "signature": sign_personal(key.key, message)})
        assert posted.status_code == 201, posted.text
        for c in clients:
            listed = c.get("/api/datasets/pgdigits/comments").json()["comments"]
            assert [x["body"] for x in listed] == [body]
        for c in clients:
            c.close()
        assert len(seen - {None}) == 2, seen  # both processes answered
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_several_workers_are_refused_on_the_embedded_chain(web_home):
    result = web_home("serve", "--workers", "2", code=2, json_out=False)
    assert "single writer" in result.stderr
