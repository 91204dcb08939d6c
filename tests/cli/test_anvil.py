"""The CLI on a JSON-RPC node (anvil): deploy, import funded keys, the curation loop;
`dev advance` is refused there."""

from __future__ import annotations

import pytest

from tests.chain.conftest import anvil_url  # noqa: F401 - the session-wide anvil fixture
from tests.cli.conftest import Cli


def dev_key(index: int) -> str:
    """anvil's funded dev accounts come from the public test mnemonic."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    acct = Account.from_mnemonic("test test test test test test test test test test test junk",
                                 account_path=f"m/44'/60'/0'/0/{index}")
    return "0x" + bytes(acct.key).hex()


DEV_KEYS = [dev_key(i) for i in range(3)]


@pytest.fixture
def remote(tmp_path, anvil_url):  # noqa: F811
    cli = Cli(tmp_path / "home")
    cli("init", "--chain", anvil_url, env={"DATABRIGHT_DEPLOYER_KEY": DEV_KEYS[0]})
    for name, key in (("alice", DEV_KEYS[1]), ("bob", DEV_KEYS[2])):
        cli("account", "import", name, env={"DATABRIGHT_PRIVATE_KEY": key})
    return cli


def test_curation_loop_on_anvil(remote, digit_folder, tmp_path):
    seed = digit_folder(tmp_path / "seed", 0, 50)
    remote("dataset", "create", "digits", "--from", str(seed), "--period", "1h", as_="alice")
    batch = digit_folder(tmp_path / "batch", 60, 20)
    pid = str(remote("propose", "digits", str(batch), as_="bob")["proposal_id"])
    assert remote("vote", pid, "yes", as_="alice")["weight"] > 0
    assert remote("finalize", pid, as_="bob")["status"] == "accepted"
    assert remote("verify", "digits")["ok"] is True
    attached = Cli(tmp_path / "second")
    market = remote("init")["contracts"]["DataMarket"]
    out = attached("init", "--chain", remote("init")["chain"], "--market", market)
    assert out["datasets"] == 1 and out["proposals"] == 1


def test_dev_advance_is_refused_on_a_real_node(remote):
    result = remote("dev", "advance", "1d", code=2)
    assert result.stderr.startswith("error: `dev advance` only works on the embedded chain")


def test_deploy_without_a_key_says_what_to_do(tmp_path, anvil_url):  # noqa: F811
    result = Cli(tmp_path / "h")("init", "--chain", anvil_url, code=2)
    assert "DATABRIGHT_DEPLOYER_KEY" in result.stderr
