"""A JSON-RPC node that does not answer, or stops answering mid-command: one line, exit 5."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from databright.chain.accounts import Keystore
from databright.errors import ChainUnreachableError
from tests.cli.conftest import PASSWORD, Cli

ANVIL_CHAIN_ID = 31337
COMMANDS = [
    ("dataset", "list"),
    ("dataset", "show", "digits"),
    ("shares", "--as", "ann"),
    ("dividends", "--as", "ann"),
    ("withdraw", "--as", "ann"),
    ("distribute", "digits", "1eth", "--as", "ann"),
    ("transfer", "digits", "0x" + "22" * 20, "1", "--as", "ann"),
    ("proposals",),
    ("proposal", "show", "1"),
    ("vote", "1", "yes", "--as", "ann"),
    ("finalize", "1", "--as", "ann"),
    ("verify", "digits"),
    ("account", "list"),
    ("account", "show", "ann"),
    ("init",),
]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is


def _home(root: Path, url: str) -> Path:
    home = root / "home"
    (home / "keystore").mkdir(parents=True)
    (home / "config.json").write_text(json.dumps({
        "chain": url, "chain_id": ANVIL_CHAIN_ID, "default_account": "ann",
        "contracts": {"DataMarket": "0x" + "11" * 20},
    }))
    Keystore(home / "keystore", kdf="pbkdf2", iterations=2).new("ann", PASSWORD)
    return home


def _assert_one_line_exit_5(cli: Cli, args: tuple[str, ...], folder: Path) -> str:
    if args[:1] == ("propose",):
        args = (*args[:2], str(folder), *args[2:])
    result = cli(*args, code=ChainUnreachableError.exit_code)
    err = result.stderr.strip()
    assert err.startswith("error: "), (args, err)
    assert len(err.splitlines()) == 1, (args, err)
    assert "Traceback" not in result.stdout + result.stderr, args
    return err


@pytest.mark.parametrize("args", [*COMMANDS, ("propose", "digits", "--as", "ann")],
                         ids=lambda a: " ".join(a[:2]))
def test_a_closed_port_is_one_line_and_exit_5(tmp_path, args, digit_folder):
    port = _closed_port()
    cli = Cli(_home(tmp_path, f"http://127.0.0.1:{port}"))
    err = _assert_one_line_exit_5(cli, args, digit_folder(tmp_path / "batch", 0, 5))
    assert f"127.0.0.1:{port}" in err and "Connection refused" in err


class _AnswersOnlyItsChainId(BaseHTTPRequestHandler):
    """A node that says which chain it serves, then fails every other request with HTTP 502."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answers = {"eth_chainId": hex(ANVIL_CHAIN_ID), "web3_clientVersion": "dying-node/1.0"}
        if body.get("method") in answers:
            payload = json.dumps({"jsonrpc": "2.0", "id": body["id"],
                                  "result": answers[body["method"]]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(502)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def dying_node():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AnswersOnlyItsChainId)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize("args", [("dataset", "list"), ("shares", "--as", "ann"),
                                  ("account", "list"), ("proposal", "show", "1"),
                                  ("propose", "digits", "--as", "ann"),
                                  ("distribute", "digits", "1eth", "--as", "ann")],
                         ids=lambda a: " ".join(a[:2]))
def test_a_node_that_stops_answering_mid_command_is_exit_5(tmp_path, dying_node, args,
                                                           digit_folder):
    cli = Cli(_home(tmp_path, dying_node))
    err = _assert_one_line_exit_5(cli, args, digit_folder(tmp_path / "batch", 0, 5))
    assert f"the chain at {dying_node} stopped answering" in err
