"""The keystore: standard encrypted key files, names, passwords, atomic writes."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from eth_account import Account

from databright.chain.accounts import Keystore, validate_name
from databright.errors import AccountExistsError, NotFoundError, UsageError, WrongPasswordError


@pytest.fixture
def keystore(tmp_path: Path) -> Keystore:
    return Keystore(tmp_path / "keystore", kdf="pbkdf2", iterations=1000)


def test_new_unlock_roundtrip(keystore: Keystore) -> None:
    address = keystore.new("alice", "pw")
    assert keystore.address_of("alice") == address
    account = keystore.unlock("alice", "pw")
    assert account.address == address
    assert keystore.list() == [("alice", address)]
    assert "alice" in keystore and "bob" not in keystore


def test_key_file_is_standard_keystore_json(keystore: Keystore) -> None:
    address = keystore.new("alice", "pw")
    path = keystore.path_of("alice")
    data = json.loads(path.read_text())
    assert data["version"] == 3 and data["crypto"]["kdf"] == "pbkdf2"
    data.pop("name")
    assert Account.from_key(Account.decrypt(data, "pw")).address == address
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_default_kdf_is_scrypt(tmp_path: Path) -> None:
    store = Keystore(tmp_path / "ks", iterations=2**4)  # standard scrypt, tiny n for speed
    store.new("a", "pw")
    assert json.loads(store.path_of("a").read_text())["crypto"]["kdf"] == "scrypt"
    assert store.unlock("a", "pw").address == store.address_of("a")


def test_import_key(keystore: Keystore) -> None:
    key = "0x" + "11" * 32
    address = keystore.import_key("imported", key, "pw")
    assert address == Account.from_key(key).address
    assert keystore.unlock("imported", "pw").key == bytes.fromhex("11" * 32)
    with pytest.raises(UsageError, match="not a valid private key"):
        keystore.import_key("bad", "0x1234", "pw")


def test_wrong_password(keystore: Keystore) -> None:
    keystore.new("alice", "pw")
    with pytest.raises(WrongPasswordError, match="alice"):
        keystore.unlock("alice", "nope")


def test_unknown_account(keystore: Keystore) -> None:
    keystore.new("alice", "pw")
    with pytest.raises(NotFoundError, match="known: alice"):
        keystore.unlock("bob", "pw")
    with pytest.raises(NotFoundError):
        keystore.address_of("bob")


def test_duplicate_name(keystore: Keystore) -> None:
    first = keystore.new("alice", "pw")
    with pytest.raises(AccountExistsError):
        keystore.new("alice", "other")
    assert keystore.unlock("alice", "pw").address == first


@pytest.mark.parametrize("name", ["", "../evil", "a/b", "0xabc", ".hidden", "x" * 65, "sp ace"])
def test_invalid_names(keystore: Keystore, name: str) -> None:
    with pytest.raises(UsageError):
        validate_name(name)
    with pytest.raises(UsageError):
        keystore.new(name, "pw")


def test_list_sorted_and_ignores_foreign_files(keystore: Keystore) -> None:
    b = keystore.new("bob", "pw")
    a = keystore.new("alice", "pw")
    (keystore.directory / "junk.json").write_text("not json")
    assert keystore.list() == [("alice", a), ("bob", b)]


def test_empty_keystore_lists_nothing(tmp_path: Path) -> None:
    assert Keystore(tmp_path / "nowhere").list() == []
