"""Accounts in the standard encrypted Ethereum keystore format, one file per account.

Each account is ``<keystore_dir>/<name>.json``: the Web3 Secret Storage JSON that eth-account's
``Account.encrypt`` writes (geth, Foundry's ``cast wallet`` and MetaMask read it), plus one extra
top-level ``"name"`` field. Files are written atomically and readable only by their owner.

The key derivation defaults to the standard scrypt (about a second per unlock on purpose). Only
code may ask for a cheaper one (``kdf="pbkdf2"`` with few ``iterations``: the CLI's ``--fast-kdf``
for throwaway dev accounts, and tests); no environment variable can weaken it.

This module is also where the layers above turn a private key into a signer (addresses are
checked by :func:`databright.chain.wrapper.checksum`), so only ``databright.chain`` imports
eth-account and web3.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Literal, TypeAlias

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from databright.errors import AccountExistsError, NotFoundError, UsageError, WrongPasswordError

Kdf = Literal["scrypt", "pbkdf2"]
#: An unlocked account that signs transactions (what the market layer passes around).
Signer: TypeAlias = LocalAccount
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid account name, else raise :class:`UsageError`.

    Names are 1–64 characters: letters, digits, ``_``, ``.``, ``-``; not starting with a
    punctuation mark; not ``0x…`` (that reads as an address).
    """
    if not isinstance(name, str) or not _NAME.match(name) or name.lower().startswith("0x"):
        raise UsageError(
            f"invalid account name {name!r}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (and not '0x')"
        )
    return name


def signer_from_key(key: bytes | str) -> Signer:
    """A signer for a raw private key (bytes or 0x hex), e.g. a deployer key from the environment.

    Raises:
        UsageError: the key is not a valid secp256k1 private key.
    """
    try:
        account: LocalAccount = Account.from_key(key.strip() if isinstance(key, str) else key)
    except Exception as exc:  # noqa: BLE001 - eth-account raises several unrelated types
        raise UsageError(f"not a valid private key: {type(exc).__name__}") from None
    return account


class Keystore:
    """The encrypted keys of one home.

    Args:
        directory: ``home.keystore_dir``; created on first write.
        kdf: ``"scrypt"`` (standard, default) or ``"pbkdf2"`` for new and imported keys.
        iterations: KDF work factor (scrypt ``n`` / pbkdf2 ``c``); library default when ``None``.
    """

    def __init__(
        self, directory: Path | str, kdf: Kdf | None = None, iterations: int | None = None
    ) -> None:
        self.directory = Path(directory)
        if kdf not in (None, "scrypt", "pbkdf2"):
            raise UsageError(f"unknown key derivation {kdf!r}: use scrypt or pbkdf2")
        if iterations is not None and iterations < 1:
            raise UsageError("the key derivation work factor must be positive")
        self.kdf: Kdf = kdf or "scrypt"
        self.iterations = iterations

    def path_of(self, name: str) -> Path:
        """The key file of account ``name``."""
        return self.directory / f"{validate_name(name)}.json"

    def _read(self, name: str) -> dict[str, Any]:
        path = self.path_of(name)
        try:
            return dict(json.loads(path.read_text()))
        except FileNotFoundError:
            known = ", ".join(n for n, _ in self.list()) or "none yet"
            raise NotFoundError(
                f"no account named {name!r} in {self.directory} (known: {known}); "
                "create one with `databright account new`"
            ) from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read key file {path}: {exc}") from exc

    def _write(self, name: str, key: bytes, password: str) -> str:
        path = self.path_of(name)
        if path.exists():
            raise AccountExistsError(
                f"an account named {name!r} already exists in {self.directory}"
            )
        if not isinstance(password, str):
            raise UsageError("the password must be a string")
        keyfile = Account.encrypt(key, password, kdf=self.kdf, iterations=self.iterations)
        keyfile["name"] = name
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".key.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(keyfile, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            # link, not replace: never overwrite an account created meanwhile by another process
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise AccountExistsError(
                    f"an account named {name!r} already exists in {self.directory}"
                ) from None
        finally:
            Path(tmp).unlink(missing_ok=True)
        return Web3.to_checksum_address(Account.from_key(key).address)

    def new(self, name: str, password: str) -> str:
        """Create account ``name`` with a fresh random key; returns its address.

        Raises:
            AccountExistsError: the name is taken.
            UsageError: the name is invalid.
        """
        validate_name(name)
        return self._write(name, bytes(Account.create().key), password)

    def import_key(self, name: str, key: bytes | str, password: str) -> str:
        """Store an existing private key (bytes or hex) as account ``name``; returns its address.

        Raises:
            AccountExistsError: the name is taken.
            UsageError: the name or the key is invalid.
        """
        validate_name(name)
        return self._write(name, bytes(signer_from_key(key).key), password)

    def list(self) -> list[tuple[str, str]]:
        """All accounts as ``(name, checksum address)``, sorted by name."""
        if not self.directory.is_dir():
            return []
        out: list[tuple[str, str]] = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                data = json.loads(path.read_text())
                out.append((path.stem, Web3.to_checksum_address("0x" + data["address"][-40:])))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a foreign or torn file is not an account
        return out

    def address_of(self, name: str) -> str:
        """The checksum address of account ``name`` (no password needed).

        Raises:
            NotFoundError: no such account.
        """
        data = self._read(name)
        return Web3.to_checksum_address("0x" + str(data["address"])[-40:])

    def unlock(self, name: str, password: str) -> LocalAccount:
        """Decrypt account ``name``'s key.

        Raises:
            NotFoundError: no such account.
            WrongPasswordError: the password does not decrypt it.
        """
        data = self._read(name)
        data.pop("name", None)
        try:
            key = Account.decrypt(data, password)
        except ValueError as exc:  # eth-keyfile's "MAC mismatch" is a ValueError
            if "mac" in str(exc).lower():
                raise WrongPasswordError(f"wrong password for account {name!r}") from None
            raise UsageError(f"cannot decrypt account {name!r}: {exc}") from None
        account: LocalAccount = Account.from_key(key)
        return account

    def __contains__(self, name: object) -> bool:
        return (
            isinstance(name, str) and _NAME.match(name) is not None and self.path_of(name).is_file()
        )
