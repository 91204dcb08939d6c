"""The embedded chain: py-evm through eth-tester, persisted in ``<home>/chain/chain.sqlite``.

Design:

* py-evm keeps all chain data in an ``AtomicDB`` over :class:`~databright.chain.kvstore.SqliteKV`;
  a chain object opened on the same file resumes at its canonical head (no replay).
* The SQLite transaction is committed after every mined block (eth-tester mines one block per
  transaction), so the file always ends at a block boundary, even after ``kill -9``.
* The clock is wall time plus a persisted offset; :meth:`EmbeddedBackend.advance` grows the offset
  and mines a block at the new time, so advanced time survives a reopen and keeps flowing.
* One process at a time: :class:`~databright.chain.lock.ChainLock` (a ``filelock`` next to the
  database) is held for as long as the chain is open.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth.chains.base import MiningChain
from eth.db.atomic import AtomicDB
from eth.estimators.gas import binary_gas_search_intrinsic_tolerance
from eth.vm.forks import PragueVM
from eth.vm.spoof import SpoofTransaction
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.backends.pyevm.main import (
    generate_genesis_state_for_keys,
    get_default_account_keys,
    get_default_genesis_params,
)

from databright.chain.kvstore import SqliteKV
from databright.chain.lock import ChainLock

CHAIN_ID = 131277322940537  # the id web3's EthereumTesterProvider reports for eth_chainId
_OFFSET_KEY = "clock_offset"
_GENESIS_ACCOUNTS = 10


def fast_gas_estimate(state: Any, transaction: Any) -> int:
    """Two executions instead of py-evm's ~13-step binary search.

    Measure the gas used at the block limit, pad it (refunds, the 63/64 rule of nested calls),
    and check the padded limit really succeeds; fall back to the binary search if it does not.
    """
    snapshot = state.snapshot()
    try:
        computation = state.apply_transaction(
            SpoofTransaction(transaction, gas=state.gas_limit, gas_price=0)
        )
        if computation.is_error:
            raise computation.error
        used = transaction.intrinsic_gas + computation.get_gas_used()
    finally:
        state.revert(snapshot)
    candidate = min(state.gas_limit, used * 5 // 4 + 10_000)
    snapshot = state.snapshot()
    try:
        ok = not state.apply_transaction(SpoofTransaction(transaction, gas=candidate)).is_error
    finally:
        state.revert(snapshot)
    return candidate if ok else int(binary_gas_search_intrinsic_tolerance(state, transaction))


def chain_class(clock: Callable[[], int]) -> type[MiningChain]:
    """A post-merge dev chain class whose new headers take their time from ``clock``.

    Every header py-evm makes (the pending block, the throw-away block of a gas estimate) is
    stamped ``max(parent + 1, clock())``, so estimates see the same time as the real block.
    """

    class ClockedPragueVM(PragueVM):  # type: ignore[misc]
        @classmethod
        def create_header_from_parent(cls, parent_header: Any, **header_params: Any) -> Any:
            if parent_header is not None:
                header_params.setdefault("timestamp", max(parent_header.timestamp + 1, clock()))
                header_params["gas_limit"] = parent_header.gas_limit  # keep it constant
            return PragueVM.create_header_from_parent(parent_header, **header_params)

    class EmbeddedPosChain(MiningChain):  # type: ignore[misc]
        chain_id = CHAIN_ID
        vm_configuration = ((0, ClockedPragueVM),)  # type: ignore[assignment]
        gas_estimator = staticmethod(fast_gas_estimate)

        def get_transaction_builder(self) -> Any:
            return self.get_vm().get_transaction_builder()

    return EmbeddedPosChain


def genesis_keys() -> tuple[Any, ...]:
    """The dev faucet keys: eth-tester's well-known genesis accounts (private keys 1..10)."""
    return tuple(get_default_account_keys(quantity=_GENESIS_ACCOUNTS))


def faucet_account() -> LocalAccount:
    """The first genesis account (1,000,000 ether at genesis), used by ``fund``."""
    return Account.from_key(genesis_keys()[0].to_bytes())


class EmbeddedBackend(PyEVMBackend):
    """eth-tester's py-evm backend, persisted: commits after each block, keeps a clock offset."""

    def __init__(self, kv: SqliteKV) -> None:
        self.kv = kv
        self.account_keys = genesis_keys()
        self.offset = int(kv.get_meta(_OFFSET_KEY, "0") or 0)
        chain_cls = chain_class(self.chain_time)
        base_db = AtomicDB(kv)
        if kv.get_meta("genesis") is None:
            state = generate_genesis_state_for_keys(self.account_keys)
            self.chain = chain_cls.from_genesis(base_db, get_default_genesis_params(), state)
            kv.set_meta("genesis", "1")
            kv.set_meta(_OFFSET_KEY, "0")
            kv.commit()
        else:
            self.chain = chain_cls(base_db)
        self._refresh_clock()

    # -- clock --------------------------------------------------------------------------------
    def chain_time(self) -> int:
        """Wall-clock seconds plus the persisted offset."""
        return int(time.time()) + self.offset

    def _refresh_clock(self) -> None:
        """Stamp the pending block with the chain's current time (only while it is empty)."""
        pending = self.chain.get_block()
        if pending.transactions:
            return
        parent = self.chain.get_canonical_head()
        stamp = max(parent.timestamp + 1, self.chain_time())
        chain: Any = self.chain  # a MiningChain: it has a pending header
        if stamp != chain.header.timestamp:
            chain.header = chain.header.copy(timestamp=stamp)

    def latest_timestamp(self) -> int:
        """Timestamp of the last mined block."""
        return int(self.chain.get_canonical_head().timestamp)

    def set_offset_for(self, seconds: int) -> None:
        """Move the clock so the next block is at least ``seconds`` after the last one."""
        target = max(self.latest_timestamp() + seconds, self.chain_time() + seconds)
        self.offset = target - int(time.time())
        self.kv.set_meta(_OFFSET_KEY, str(self.offset))

    # -- writes: stamp the block before executing, commit after mining ---------------------------
    def send_raw_transaction(self, raw_transaction: bytes) -> Any:
        self._refresh_clock()
        return super().send_raw_transaction(raw_transaction)

    def send_signed_transaction(
        self, signed_transaction: Any, block_number: Any = "pending"
    ) -> Any:
        self._refresh_clock()
        return super().send_signed_transaction(signed_transaction, block_number)

    def send_transaction(self, transaction: Any) -> Any:
        self._refresh_clock()
        return super().send_transaction(transaction)

    def mine_blocks(self, num_blocks: int = 1, coinbase: bytes = b"\0" * 20) -> tuple[Any, ...]:
        hashes = []
        for _ in range(num_blocks):
            self._refresh_clock()
            hashes.extend(super().mine_blocks(1, coinbase))
            self.kv.commit()  # one SQLite transaction per block
        self._refresh_clock()
        return tuple(hashes)

    def time_travel(self, to_timestamp: int) -> int:
        self.set_offset_for(max(0, to_timestamp - self.latest_timestamp()))
        self.mine_blocks(1)
        return to_timestamp

    def reset_to_genesis(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("the embedded chain is persistent: delete the home to reset")

    def revert_to_snapshot(self, snapshot: Any) -> None:
        raise NotImplementedError("the embedded chain is persistent: snapshots are not supported")


class EmbeddedChain:
    """An opened embedded chain: lock held, database open, an ``EthereumTester`` on top.

    Args:
        chain_dir: ``home.chain_dir``.
        lock_timeout: see :class:`ChainLock`.
        on_wait: see :class:`ChainLock`.
    """

    def __init__(
        self,
        chain_dir: Path,
        lock_timeout: float | None = None,
        on_wait: Callable[[str | None], None] | None = None,
    ) -> None:
        self.chain_dir = Path(chain_dir)
        # eth-tester is not thread-safe: every request and every mining step takes this mutex
        self.mutex = threading.RLock()
        self.closed = False
        self.lock = ChainLock(self.chain_dir, lock_timeout, on_wait)
        self.lock.acquire()
        try:
            self.kv = SqliteKV(self.chain_dir / "chain.sqlite")
            self.backend = EmbeddedBackend(self.kv)
            self.tester = EthereumTester(self.backend)
        except BaseException:
            self.lock.release()
            raise

    def advance_time(self, seconds: int) -> int:
        """Move the clock forward, mine one block at the new time; returns its timestamp."""
        with self.mutex:
            self.backend.set_offset_for(int(seconds))
            self.tester.mine_blocks(1)
            return self.backend.latest_timestamp()

    def mine_empty_blocks(self, count: int) -> None:
        """Mine ``count`` empty blocks (each committed on its own).

        Straight through the backend: eth-tester's per-block bookkeeping (it re-reads every
        block for block filters) would cost a quarter of the time, and empty blocks have no logs.
        """
        with self.mutex:
            self.backend.mine_blocks(count)

    def close(self) -> None:
        """Close the database and release the lock (idempotent)."""
        try:
            with self.mutex:
                if not self.closed:
                    self.closed = True
                    self.kv.close()
        finally:
            self.lock.release()
