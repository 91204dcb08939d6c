"""Open the chain a home names: the embedded chain or any Ethereum JSON-RPC URL.

Everything above this module talks to a :class:`Chain`: a ``web3.Web3`` plus the few things the
app needs that web3 spreads over node-specific calls (the clock, a faucet) and one send path that
signs locally and turns every failure into a :class:`~databright.errors.DataBrightError`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Self

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import TransactionIndexingInProgress, TransactionNotFound
from web3.providers.eth_tester import EthereumTesterProvider
from web3.types import TxReceipt

from databright.chain.embedded import EmbeddedChain, faucet_account
from databright.chain.reverts import revert_error, translate
from databright.errors import (
    ChainError,
    ChainUnreachableError,
    ConfigError,
    DevChainOnlyError,
    UsageError,
)
from databright.home import EMBEDDED, Config, Home

RECEIPT_TIMEOUT = 120.0
#: dev node (as ``web3_clientVersion`` names it) → its "set balance" method; all three move the
#: clock with ``evm_increaseTime`` + ``evm_mine``.
_DEV_NODES = {
    "anvil": "anvil_setBalance",
    "hardhat": "hardhat_setBalance",
    "ganache": "evm_setAccountBalance",
}


class _SerialTesterProvider(EthereumTesterProvider):
    """eth-tester is not thread-safe: one request at a time (the web server has threads)."""

    def __init__(self, embedded: EmbeddedChain) -> None:
        super().__init__(embedded.tester)
        self._embedded = embedded

    def make_request(self, method: Any, params: Any) -> Any:
        with self._embedded.mutex:
            if self._embedded.closed:
                raise ChainError("the embedded chain was closed: open it again")
            return super().make_request(method, params)


class Chain:
    """One open chain. Close it (or use ``with``) to release the embedded chain's lock.

    Attributes:
        w3: the ``web3.Web3`` instance.
        url: ``"embedded"`` or the JSON-RPC URL.
        is_embedded: the in-process persisted chain.
        dev_node: ``"anvil"``/``"hardhat"``/``"ganache"`` for known dev nodes, else ``None``.
    """

    def __init__(
        self,
        w3: Web3,
        url: str,
        embedded: EmbeddedChain | None = None,
        dev_node: str | None = None,
    ) -> None:
        self.w3 = w3
        self.url = url
        self.embedded = embedded
        self.dev_node = dev_node
        self._send_lock = threading.RLock()
        with self.translating():
            self.chain_id: int = int(w3.eth.chain_id)

    # -- what kind of chain ---------------------------------------------------------------------
    @property
    def is_embedded(self) -> bool:
        return self.embedded is not None

    @property
    def supports_time_travel(self) -> bool:
        """True on the embedded chain and on dev nodes (anvil, hardhat, ganache)."""
        return self.is_embedded or self.dev_node is not None

    # -- errors -----------------------------------------------------------------------------------
    @contextmanager
    def translating(self) -> Iterator[None]:
        """Re-raise web3/eth-tester failures inside the block as DataBright errors."""
        try:
            yield
        except Exception as exc:
            mapped = translate(exc, self.url)
            if mapped is None and not self.is_embedded and _is_transport_failure(exc):
                # a node that dies or garbles its answers mid-command is unreachable too
                mapped = ChainUnreachableError(
                    f"the chain at {self.url} stopped answering ({type(exc).__name__})"
                )
            if mapped is None or mapped is exc:
                raise
            raise mapped from exc

    # -- reading ----------------------------------------------------------------------------------
    def block_number(self) -> int:
        """Number of the latest mined block."""
        with self.translating():
            return int(self.w3.eth.block_number)

    def now(self) -> int:
        """Timestamp of the latest mined block (the chain's idea of now)."""
        with self.translating():
            return int(self.w3.eth.get_block("latest")["timestamp"])

    def next_block_time(self) -> int:
        """The timestamp a transaction sent now would see (the chain's clock, read without a block).

        ``now()`` stands still between blocks; this follows the clock: on the embedded chain
        ``max(latest + 1, wall clock + offset)``, on a node its pending block's timestamp. A node
        that serves no pending block gives ``latest + 1``: the earliest time the chain itself
        guarantees. A remote node's clock is never replaced by this machine's (a dev node's
        clock may be far from it, and deadlines are judged by the chain).
        """
        from web3.exceptions import Web3Exception

        with self.translating():
            if self.embedded is not None:
                with self.embedded.mutex:
                    backend = self.embedded.backend
                    return max(backend.latest_timestamp() + 1, backend.chain_time())
            latest = int(self.w3.eth.get_block("latest")["timestamp"])
            try:
                block = self.w3.eth.get_block("pending")
            except (Web3Exception, ValueError):  # "pending" is optional for a node
                return latest + 1
            pending = block.get("timestamp") if block else None
            return max(latest + 1, int(pending)) if pending is not None else latest + 1

    def balance(self, address: str) -> int:
        """Ether balance of ``address`` in wei."""
        with self.translating():
            return int(self.w3.eth.get_balance(Web3.to_checksum_address(address)))

    def has_code(self, address: str) -> bool:
        """True if a contract is deployed at ``address``."""
        with self.translating():
            return len(bytes(self.w3.eth.get_code(Web3.to_checksum_address(address)))) > 0

    def call(self, fn: Any, block: int | str = "latest") -> Any:
        """Call a view function (``contract.functions.f(...)``), errors translated."""
        with self.translating():
            return fn.call(block_identifier=block)

    # -- writing ----------------------------------------------------------------------------------
    def _fees(self) -> dict[str, int]:
        base = int(self.w3.eth.get_block("latest").get("baseFeePerGas") or 0)
        # eth-tester answers a constant 1 gwei tip: skip the round trip
        tip = 10**9 if self.is_embedded else int(self.w3.eth.max_priority_fee)
        return {"maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * base + tip}

    def _build(self, fn_or_tx: Any, sender: str, value: int, gas: int | None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "from": sender,
            "value": int(value),
            "chainId": self.chain_id,
            "nonce": self.w3.eth.get_transaction_count(Web3.to_checksum_address(sender), "pending"),
            **self._fees(),
        }
        if hasattr(fn_or_tx, "build_transaction"):
            # a placeholder gas limit stops web3 from estimating against "latest"
            tx = dict(fn_or_tx.build_transaction({**params, "gas": gas or 1}))
        else:
            tx = {**dict(fn_or_tx), **params}
        if gas is not None:
            tx["gas"] = int(gas)
        else:
            # Estimate in the pending block, where the transaction will run: against "latest",
            # block.number is one too low (a vote right after its proposal would seem too early).
            # (eth-tester has no block argument here; it already runs on the pending block.)
            probe = {k: v for k, v in tx.items() if k != "gas"}
            if self.is_embedded:
                tx["gas"] = int(self.w3.eth.estimate_gas(probe))  # type: ignore[arg-type]
            else:
                estimate = int(self.w3.eth.estimate_gas(probe, "pending"))  # type: ignore[arg-type]
                # eth-tester pads its estimate already; nodes return the bare minimum.
                tx["gas"] = int(estimate * 1.2) + 10_000
        tx.pop("from", None)
        return tx

    def send(
        self, fn_or_tx: Any, account: LocalAccount, value: int = 0, gas: int | None = None
    ) -> TxReceipt:
        """Build, estimate, sign locally, send and wait for one transaction.

        Args:
            fn_or_tx: a contract call (``contract.functions.f(...)``), a constructor, or a
                transaction dict (``to``, ``data``, ...).
            account: the signer (an unlocked keystore account).
            value: wei to send along.
            gas: a gas limit; estimated when ``None``.

        Returns:
            The mined receipt (status 1).

        Raises:
            ContractRevert: (or a subclass) the contract refused, with its reason.
            InsufficientFundsError: the account cannot pay value + gas.
            ChainUnreachableError: the node does not answer.
        """
        with self._send_lock, self.translating():
            tx = self._build(fn_or_tx, account.address, value, gas)
            signed = account.sign_transaction(tx)
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = self._wait_receipt(tx_hash)
            if receipt["status"] != 1:
                self._raise_replayed(tx, account.address, receipt)
            return receipt

    def _wait_receipt(self, tx_hash: Any) -> TxReceipt:
        """Poll for the receipt, fast at first: dev nodes mine within milliseconds."""
        delay, deadline = 0.002, time.monotonic() + RECEIPT_TIMEOUT
        while True:
            try:
                return self.w3.eth.get_transaction_receipt(tx_hash)
            except (TransactionNotFound, TransactionIndexingInProgress):
                pass
            if time.monotonic() > deadline:
                raise ChainError(
                    f"transaction {Web3.to_hex(tx_hash)} not mined after {RECEIPT_TIMEOUT:.0f} s"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def _raise_replayed(self, tx: dict[str, Any], sender: str, receipt: TxReceipt) -> None:
        """A mined revert: replay it as a call on the parent state to learn the reason."""
        call: dict[str, Any] = {k: tx[k] for k in ("to", "data", "value", "gas") if k in tx}
        call["from"] = sender
        try:
            self.w3.eth.call(call, receipt["blockNumber"] - 1)  # type: ignore[arg-type]
        except Exception as exc:
            mapped = translate(exc, self.url)
            if mapped is not None:
                raise mapped from exc
        raise revert_error("")

    # -- development helpers ----------------------------------------------------------------------
    def _rpc(self, method: str, params: list[Any]) -> Any:
        """A raw JSON-RPC call that raises on an error answer."""
        return self.w3.manager.request_blocking(method, params)  # type: ignore[arg-type]

    def _require_dev(self, what: str) -> None:
        if not self.supports_time_travel:
            raise DevChainOnlyError(
                f"{what} works only on the embedded chain or a dev node (anvil, hardhat); "
                f"{self.url} is a real network"
            )

    def advance_time(self, seconds: int) -> int:
        """Move the chain's clock forward by ``seconds`` and mine a block; returns its timestamp.

        Raises:
            DevChainOnlyError: on a real network.
        """
        if seconds < 0:
            raise UsageError("time only moves forward")
        self._require_dev("moving the clock")
        with self._send_lock, self.translating():
            if self.embedded is not None:
                return self.embedded.advance_time(int(seconds))
            self._rpc("evm_increaseTime", [int(seconds)])
            self._rpc("evm_mine", [])
            return self.now()

    def fund(self, address: str, wei: int) -> None:
        """Give ``address`` ``wei`` from the dev faucet (embedded) or the dev node's balance API.

        Raises:
            DevChainOnlyError: on a real network.
        """
        self._require_dev("the faucet")
        address = Web3.to_checksum_address(address)
        if self.embedded is not None:
            self.send({"to": address}, faucet_account(), value=int(wei), gas=21_000)
            return
        with self._send_lock, self.translating():
            method = _DEV_NODES[self.dev_node or "anvil"]
            new = int(self.w3.eth.get_balance(address)) + int(wei)
            self._rpc(method, [address, hex(new)])

    # -- lifetime ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the embedded chain (database and lock); idempotent."""
        if self.embedded is not None:
            self.embedded.close()
            self.embedded = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_transport_failure(exc: BaseException) -> bool:
    """An HTTP error, a dropped connection or an unreadable answer from a JSON-RPC node."""
    import requests
    from web3.exceptions import BadResponseFormat

    return isinstance(exc, requests.RequestException | BadResponseFormat | OSError)


def _detect_dev_node(w3: Web3) -> str | None:
    try:
        version = str(w3.client_version).lower()
    except Exception:  # noqa: BLE001 - web3_clientVersion is optional for a node
        return None
    for name in _DEV_NODES:
        if name in version:
            return name
    return None


def connect_url(url: str, timeout: float = 30.0) -> Chain:
    """A :class:`Chain` over a JSON-RPC HTTP(S) URL.

    Raises:
        ChainUnreachableError: nothing answers at ``url``.
        UsageError: ``url`` is not http(s).
    """
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"chain must be `embedded` or an http(s) JSON-RPC URL, not {url!r}")
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
    try:
        _ = w3.eth.chain_id
    except Exception as exc:  # noqa: BLE001 - any failure here means the URL is not usable
        raise ChainUnreachableError(
            f"cannot reach the chain at URL: {url} ({_short(exc)})"
        ) from None
    return Chain(w3, url, dev_node=_detect_dev_node(w3))


def _short(exc: BaseException) -> str:
    """The last line of a nested requests/urllib3 message ("Connection refused", ...)."""
    text = str(exc).replace("\n", " ")
    for marker in ("] ", "): "):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    return text.strip(" ')\"") or type(exc).__name__


def open_embedded(
    home: Home,
    lock_timeout: float | None = None,
    on_wait: Callable[[str | None], None] | None = None,
) -> Chain:
    """The home's embedded chain, created at genesis on first use; holds its lock until closed."""
    embedded = EmbeddedChain(home.chain_dir, lock_timeout, on_wait)
    try:
        w3 = Web3(_SerialTesterProvider(embedded))
        return Chain(w3, EMBEDDED, embedded=embedded)
    except BaseException:
        embedded.close()
        raise


def open_chain(
    home: Home | str | None,
    config: Config | None = None,
    *,
    lock_timeout: float | None = None,
    on_wait: Callable[[str | None], None] | None = None,
) -> Chain:
    """Open the chain ``config`` names (``config.chain``: ``"embedded"`` or a URL).

    Args:
        home: the home folder (its ``chain/`` holds the embedded chain).
        config: the home's config; read from ``home`` when ``None``.
        lock_timeout: seconds to wait for another process on the embedded chain
            (default ``$DATABRIGHT_LOCK_TIMEOUT`` or 60).
        on_wait: called once if the embedded chain is busy and we start waiting.

    Raises:
        ChainBusyError: the embedded chain stayed busy past the timeout.
        ChainUnreachableError: the URL does not answer.
        ConfigError: the URL serves another chain than the one the home was deployed on.
    """
    home = home if isinstance(home, Home) else Home(home)
    config = config if config is not None else home.load()
    if config.chain == EMBEDDED:
        return open_embedded(home, lock_timeout, on_wait)
    chain = connect_url(config.chain)
    if config.chain_id is not None and config.chain_id != chain.chain_id:
        raise ConfigError(
            f"{config.chain} serves chain id {chain.chain_id}, but this home was set up on "
            f"chain id {config.chain_id}"
        )
    return chain
