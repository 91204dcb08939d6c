"""The embedded chain as a JSON-RPC 2.0 endpoint a browser wallet can add as a network.

Only an allow-list of methods is served: the reads a wallet needs to show balances, estimate
fees and follow its transactions, and ``eth_sendRawTransaction`` for the transactions it signs
(nothing that signs with a key the server holds, nothing that moves the clock). Answers are in
the wire format (hex quantities, camelCase fields). A sent transaction is mined at once and its
block committed to ``chain.sqlite`` by the embedded backend, like every write of the chain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eth_typing import BlockNumber
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3RPCError

from databright.chain.provider import Chain
from databright.errors import DataBrightError

READS = frozenset({
    "eth_chainId", "net_version", "eth_blockNumber", "eth_getBalance", "eth_getTransactionCount",
    "eth_gasPrice", "eth_maxPriorityFeePerGas", "eth_feeHistory", "eth_estimateGas", "eth_call",
    "eth_getCode", "eth_getBlockByNumber", "eth_getTransactionByHash",
    "eth_getTransactionReceipt", "eth_getLogs",
})
WRITES = frozenset({"eth_sendRawTransaction"})
METHODS = READS | WRITES
#: widest ``eth_getLogs`` block range served
MAX_LOG_RANGE = 1000
MAX_PARAMS = 4

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL = -32603
SERVER_ERROR = -32000
REVERTED = 3


class RpcError(Exception):
    """A JSON-RPC error object: ``code``, ``message`` and optional ``data``."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out


def wire(value: Any, key: str | None = None) -> Any:
    """A web3 result in JSON-RPC wire form: ints as hex quantities, bytes as 0x hex."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        if key == "logsBloom":
            return "0x" + value.to_bytes(256, "big").hex()
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, str):
        return value
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: wire(v, k) for k, v in dict(value).items()}
    if isinstance(value, list | tuple):
        return [wire(v, key) for v in value]
    return str(value)


def _block_number(tag: Any, head: int) -> int:
    if tag in (None, "latest", "pending", "safe", "finalized"):
        return head
    if tag == "earliest":
        return 0
    if isinstance(tag, str) and tag.startswith("0x"):
        try:
            return int(tag, 16)
        except ValueError:
            pass
    raise RpcError(INVALID_PARAMS, f"invalid block {tag!r}")


def _as_topic(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 66:
        raise RpcError(INVALID_PARAMS, f"invalid topic {value!r}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise RpcError(INVALID_PARAMS, f"invalid topic {value!r}") from None


class RpcBridge:
    """Answers JSON-RPC requests against the open embedded ``chain``.

    Args:
        chain: the open chain (embedded).
        after_send: called after a transaction was accepted (the web app wakes its index sync).
    """

    def __init__(self, chain: Chain, after_send: Callable[[], None] | None = None) -> None:
        self.chain = chain
        self.after_send = after_send

    def handle(self, payload: Any) -> Any:
        """One request object or a batch (a list); returns the response(s), ``None`` for a
        notification-only payload."""
        if isinstance(payload, list):
            if not payload:
                return _error(None, RpcError(INVALID_REQUEST, "empty batch"))
            answers = [self._one(item) for item in payload]
            kept = [a for a in answers if a is not None]
            return kept or None
        return self._one(payload)

    def _one(self, req: Any) -> dict[str, Any] | None:
        if not isinstance(req, dict) or req.get("jsonrpc") != "2.0" or \
                not isinstance(req.get("method"), str):
            return _error(req.get("id") if isinstance(req, dict) else None,
                          RpcError(INVALID_REQUEST, "not a JSON-RPC 2.0 request"))
        rid = req.get("id")
        if rid is not None and not isinstance(rid, str | int) or isinstance(rid, bool):
            return _error(None, RpcError(INVALID_REQUEST, "invalid id"))
        try:
            result = self.call(req["method"], req.get("params", []))
        except RpcError as exc:
            return _error(rid, exc) if "id" in req else None
        if "id" not in req:
            return None  # a notification
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    def call(self, method: str, params: Any) -> Any:
        """One method call (wire-format params and result)."""
        if method not in METHODS:
            raise RpcError(METHOD_NOT_FOUND, f"method {method[:60]} is not served here")
        if not isinstance(params, list) or len(params) > MAX_PARAMS:
            raise RpcError(INVALID_PARAMS, "params must be an array")
        if method == "eth_getLogs":
            return self._logs(params)
        if method == "eth_sendRawTransaction" and (len(params) != 1
                                                   or not isinstance(params[0], str)):
            raise RpcError(INVALID_PARAMS, "eth_sendRawTransaction takes one hex string")
        try:
            with self.chain.translating():
                result = self.chain.w3.manager.request_blocking(method, params)  # type: ignore[arg-type]
        except RpcError:
            raise
        except ContractLogicError as exc:
            data = exc.data if isinstance(exc.data, str) else None
            raise RpcError(REVERTED, str(exc.message or exc), data) from None
        except DataBrightError as exc:
            code = REVERTED if "revert" in str(exc).lower() or "market:" in str(exc) \
                else SERVER_ERROR
            raise RpcError(code, str(exc)) from None
        except Web3RPCError as exc:
            err = exc.rpc_response.get("error") if exc.rpc_response else None
            if isinstance(err, dict):
                raise RpcError(int(err.get("code", SERVER_ERROR)), str(err.get("message")),
                               err.get("data")) from None
            raise RpcError(SERVER_ERROR, str(exc)) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise RpcError(INVALID_PARAMS, f"invalid params: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - eth-tester raises its own validation types
            raise RpcError(SERVER_ERROR, f"{type(exc).__name__}: {exc}") from None
        if method in WRITES and self.after_send is not None:
            self.after_send()
        if method == "net_version":
            return str(result)
        if method == "eth_feeHistory":
            result = self._with_next_base_fee(dict(result))
        return wire(result)

    def _with_next_base_fee(self, history: dict[str, Any]) -> dict[str, Any]:
        """eth-tester gives one base fee per block asked; the spec adds the next block's."""
        fees = list(history.get("baseFeePerGas") or [])
        embedded = self.chain.embedded
        if embedded is not None and fees and len(fees) == len(history.get("gasUsedRatio") or []):
            with embedded.mutex:
                pending: Any = embedded.backend.chain
                fees.append(int(pending.header.base_fee_per_gas))
        history["baseFeePerGas"] = fees
        return history

    def _logs(self, params: list[Any]) -> list[dict[str, Any]]:
        """``eth_getLogs`` over at most :data:`MAX_LOG_RANGE` blocks, read block by block."""
        if len(params) != 1 or not isinstance(params[0], dict):
            raise RpcError(INVALID_PARAMS, "eth_getLogs takes one filter object")
        flt = params[0]
        if "blockHash" in flt:
            raise RpcError(INVALID_PARAMS, "filter by fromBlock/toBlock here")
        embedded = self.chain.embedded
        if embedded is None:
            raise RpcError(METHOD_NOT_FOUND, "only the embedded chain is served")
        with embedded.mutex:
            evm = embedded.backend.chain
            head = int(evm.get_canonical_head().block_number)
            start = _block_number(flt.get("fromBlock"), head)
            asked = _block_number(flt.get("toBlock"), head)
            end = min(asked, head)
            if asked - start + 1 > MAX_LOG_RANGE:
                raise RpcError(INVALID_PARAMS, f"ask for at most {MAX_LOG_RANGE} blocks of logs")
            address = flt.get("address")
            addresses = [address] if isinstance(address, str) else (address or [])
            if not isinstance(addresses, list) or not all(
                    isinstance(a, str) and Web3.is_address(a) for a in addresses):
                raise RpcError(INVALID_PARAMS, "invalid address filter")
            wanted = {bytes.fromhex(a[2:].lower()) for a in addresses}
            topics = flt.get("topics") or []
            if not isinstance(topics, list) or len(topics) > 4:
                raise RpcError(INVALID_PARAMS, "invalid topics filter")
            want_topics: list[set[bytes] | None] = []
            for t in topics:
                if t is None:
                    want_topics.append(None)
                elif isinstance(t, list):
                    want_topics.append({_as_topic(x) for x in t})
                else:
                    want_topics.append({_as_topic(t)})
            out: list[dict[str, Any]] = []
            for number in range(max(0, start), end + 1):
                block = evm.get_canonical_block_by_number(BlockNumber(number))
                if not block.transactions:
                    continue
                log_index = 0
                for tx_index, (tx, receipt) in enumerate(
                        zip(block.transactions, block.get_receipts(evm.chaindb), strict=True)):
                    for log in receipt.logs:
                        raw_topics = [t.to_bytes(32, "big") for t in log.topics]
                        if (not wanted or log.address in wanted) and _topics_match(
                                raw_topics, want_topics):
                            out.append({
                                "address": Web3.to_checksum_address(log.address),
                                "topics": ["0x" + t.hex() for t in raw_topics],
                                "data": "0x" + bytes(log.data).hex(),
                                "blockNumber": hex(number),
                                "blockHash": "0x" + bytes(block.header.hash).hex(),
                                "transactionHash": "0x" + bytes(tx.hash).hex(),
                                "transactionIndex": hex(tx_index),
                                "logIndex": hex(log_index),
                                "removed": False,
                            })
                        log_index += 1
        return out


def _topics_match(have: list[bytes], want: list[set[bytes] | None]) -> bool:
    if len(want) > len(have):
        return False
    return all(w is None or h in w for h, w in zip(have, want, strict=False))


def _error(rid: Any, exc: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": exc.as_json()}
