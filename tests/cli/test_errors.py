"""Mistakes a user can make: one line on stderr, the documented exit code, no traceback."""

from __future__ import annotations

import pytest

from databright.errors import (
    ChainBusyError,
    ChainUnreachableError,
    ContractRevert,
    InsufficientFundsError,
    NotFoundError,
    UsageError,
    WrongPasswordError,
)


def _one_line(result):
    err = result.stderr.strip()
    assert err.startswith("error: "), err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in result.stdout + result.stderr
    return err


@pytest.fixture(scope="module")
def open_proposal(market, digit_folder):
    batch = digit_folder(market.inputs / "carol", 200, 20)
    return str(market("propose", "digits", str(batch), as_="carol")["proposal_id"])


def test_unknown_dataset(market):
    err = _one_line(market("dataset", "show", "nope", code=NotFoundError.exit_code))
    assert "no dataset named 'nope'" in err and "digits" in err


def test_unknown_account(market):
    err = _one_line(market("shares", as_="nobody", code=NotFoundError.exit_code))
    assert "nobody" in err


def test_unknown_proposal(market):
    _one_line(market("proposal", "show", "999", code=NotFoundError.exit_code))


def test_wrong_password(market, open_proposal):
    err = _one_line(market("vote", open_proposal, "yes", as_="alice", password="wrong",
                           code=WrongPasswordError.exit_code))
    assert "password" in err


def test_vote_without_shares(market, open_proposal):
    err = _one_line(market("vote", open_proposal, "yes", as_="bob", code=ContractRevert.exit_code))
    assert "share" in err


def test_vote_twice(market, open_proposal):
    market("vote", open_proposal, "no", as_="alice")
    err = _one_line(market("vote", open_proposal, "no", as_="alice", code=ContractRevert.exit_code))
    assert "already voted" in err


def test_bad_vote_word(market, open_proposal):
    _one_line(market("vote", open_proposal, "maybe", as_="alice", code=UsageError.exit_code))


def test_finalize_too_early(market, digit_folder):
    batch = digit_folder(market.inputs / "early", 300, 10)
    pid = str(market("propose", "digits", str(batch), as_="bob")["proposal_id"])
    err = _one_line(market("finalize", pid, as_="bob", code=ContractRevert.exit_code))
    assert "cannot be finalized yet" in err and "market: outcome not final" in err


def test_vote_after_deadline(market, digit_folder):
    batch = digit_folder(market.inputs / "late", 400, 10)
    pid = str(market("propose", "digits", str(batch), as_="bob")["proposal_id"])
    market("dev", "advance", "2h")
    err = _one_line(market("vote", pid, "yes", as_="alice", code=ContractRevert.exit_code))
    assert "voting period is over" in err


def test_insufficient_funds(market):
    err = _one_line(market("distribute", "digits", "1000000eth", as_="carol",
                           code=InsufficientFundsError.exit_code))
    assert "wei" in err


def test_bad_folder(market, tmp_path):
    _one_line(market("propose", "digits", str(tmp_path / "missing"), as_="bob",
                     code=UsageError.exit_code))


def test_resubmitting_existing_items_is_refused(market, digit_folder):
    seed = digit_folder(market.inputs / "seed-again", 0, 80)
    err = _one_line(market("propose", "digits", str(seed), as_="bob", code=UsageError.exit_code))
    assert "nothing new" in err


def test_bad_amounts(market):
    _one_line(market("distribute", "digits", "lots", as_="carol", code=UsageError.exit_code))
    _one_line(market("transfer", "digits", "bob", "0", as_="alice", code=UsageError.exit_code))
    _one_line(market("transfer", "digits", "bob", "1.2.3", as_="alice", code=UsageError.exit_code))


def test_usage_mistakes_are_one_line_too(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "databright.cli", "vote", "--nope"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: No such option: --nope")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_no_home(tmp_path):
    from tests.cli.conftest import Cli

    cli = Cli(tmp_path / "empty")
    err = _one_line(cli("dataset", "list", code=4))
    assert "databright init" in err


def test_chain_unreachable(tmp_path):
    from tests.cli.conftest import Cli

    cli = Cli(tmp_path / "remote")
    err = _one_line(cli("init", "--chain", "http://127.0.0.1:9", "--market",
                        "0x" + "11" * 20, code=ChainUnreachableError.exit_code))
    assert "127.0.0.1:9" in err


def test_embedded_chain_busy(market):
    from databright.chain.embedded import ChainLock

    with ChainLock(market.home / "chain", timeout=1):
        result = market("dataset", "list", code=ChainBusyError.exit_code,
                        env={"DATABRIGHT_LOCK_TIMEOUT": "0.5"})
    waiting, err = result.stderr.strip().splitlines()
    assert waiting.startswith("waiting for the embedded chain")
    assert err.startswith("error: embedded chain at ") and "busy" in err


def test_oversize_files_are_refused_with_their_name(market, digit_folder):
    batch = digit_folder(market.inputs / "big-files", 600, 5)
    out = market("propose", "digits", str(batch), "--max-file-size", "10", as_="bob",
                 code=UsageError.exit_code)
    err = _one_line(out)
    assert "oversize" in err and ".png" in err


@pytest.mark.parametrize("value", ["abc", "-5", "inf", "nan"])
def test_a_malformed_lock_timeout_is_an_error_naming_it(market, value):
    err = _one_line(market("dataset", "list", code=UsageError.exit_code,
                           env={"DATABRIGHT_LOCK_TIMEOUT": value}))
    assert "DATABRIGHT_LOCK_TIMEOUT" in err and repr(value) in err


def test_the_environment_cannot_weaken_key_derivation(market):
    import json

    weak = {"DATABRIGHT_KEYSTORE_KDF": "pbkdf2", "DATABRIGHT_KEYSTORE_ITERATIONS": "1"}
    market("account", "new", "strong", env=weak)
    crypto = json.loads((market.home / "keystore" / "strong.json").read_text())["crypto"]
    assert crypto["kdf"] == "scrypt" and crypto["kdfparams"]["n"] == 2**18
    market("account", "new", "throwaway", "--fast-kdf", env=weak)  # asked for in code: allowed
    crypto = json.loads((market.home / "keystore" / "throwaway.json").read_text())["crypto"]
    assert crypto["kdf"] == "pbkdf2" and crypto["kdfparams"]["c"] == 2048


def test_a_missing_manifest_of_an_accepted_entry_is_an_integrity_error(tmp_path, digit_folder):
    from databright.errors import IntegrityError
    from databright.market.context import Deployment
    from tests.cli.conftest import Cli

    cli = Cli(tmp_path / "home")
    cli("init")
    cli("account", "new", "ann", "--fast-kdf")
    cli("dataset", "create", "tiny", "--from", str(digit_folder(tmp_path / "seed", 0, 30)),
        as_="ann")
    with Deployment(cli.home) as dep:
        seed_manifest = dep.market.get_entry(1, 0).manifest_cid
        path = dep.store.path_of(seed_manifest)
    path.chmod(0o644)
    path.unlink()
    # the seed's items must not look new: proposing them again is refused, not paid twice
    err = _one_line(cli("propose", "tiny", str(tmp_path / "seed"), as_="ann",
                        code=IntegrityError.exit_code))
    assert seed_manifest in err and "entry 0" in err
