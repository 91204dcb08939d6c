"""Separate processes on one home: crash safety and concurrent writers."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = [sys.executable, "-m", "databright.cli"]
PASSWORD = "test-password"


def run(home: Path, *args: str, as_: str | None = None, check: bool = True, timeout: float = 300):
    env = {**os.environ, "DATABRIGHT_PASSWORD": PASSWORD, "DATABRIGHT_HOME": str(home)}
    argv = [*BIN, *args, "--json"] + (["--as", as_] if as_ else [])
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}: {proc.stderr}")
    return proc


def out(proc) -> dict:
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def home(tmp_path_factory, digit_folder):
    root = tmp_path_factory.mktemp("proc")
    home = root / "home"
    run(home, "init")
    for name in ("alice", "bob"):
        run(home, "account", "new", name, "--fast-kdf")
    run(home, "dataset", "create", "digits", "--from", str(digit_folder(root / "seed", 0, 60)),
        "--period", "1h", "--quorum", "0.3", as_="alice")
    return home


def test_loop_in_separate_processes_survives_kill_9(home, digit_folder, tmp_path):
    big = digit_folder(tmp_path / "big", 100, 1200)
    rng = random.Random(5)
    killed = 0
    for _ in range(3):
        env = {**os.environ, "DATABRIGHT_PASSWORD": PASSWORD, "DATABRIGHT_HOME": str(home)}
        proc = subprocess.Popen([*BIN, "propose", "digits", str(big), "--as", "bob", "--json"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.5, 3.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
    assert killed >= 1
    # whatever the kills interrupted, the home is consistent and usable
    listed = out(run(home, "proposals"))["proposals"]
    for p in listed:
        shown = out(run(home, "proposal", "show", str(p["proposal_id"])))
        assert shown["check"]["ok"], shown["check"]
        assert shown["ingest"]["new"] == shown["items"]  # the index knows every proposal
    from databright.market.context import Deployment

    with Deployment(home) as dep:
        assert dep.store.fsck() == {}  # no partial or corrupt blob anywhere in the store
    batch = digit_folder(tmp_path / "small", 1300, 30)
    pid = out(run(home, "propose", "digits", str(batch), as_="bob"))["proposal"]
    run(home, "vote", str(pid), "yes", as_="alice")
    assert out(run(home, "finalize", str(pid), as_="bob"))["status"] == "accepted"
    check = out(run(home, "verify", "digits"))
    assert check["ok"] is True
    assert check["entries"] == 2


def test_parallel_proposes_wait_or_say_busy(home, digit_folder, tmp_path):
    before = len(out(run(home, "proposals"))["proposals"])
    env = {**os.environ, "DATABRIGHT_PASSWORD": PASSWORD, "DATABRIGHT_HOME": str(home)}
    procs = []
    for i in range(5):
        folder = digit_folder(tmp_path / f"p{i}", 1400 + 20 * i, 20)
        procs.append(subprocess.Popen(
            [*BIN, "propose", "digits", str(folder), "--as", "bob", "--json"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [(p.wait(timeout=600), p.stdout.read(), p.stderr.read()) for p in procs]
    ok = 0
    for code, stdout, stderr in results:
        if code == 0:
            ok += 1
            assert out(type("P", (), {"stdout": stdout})())["items"] == 20
        else:
            assert code == 6 and "busy" in stderr, (code, stderr)
    assert ok >= 1
    assert len(out(run(home, "proposals"))["proposals"]) == before + ok
    assert out(run(home, "verify", "digits"))["ok"] is True
