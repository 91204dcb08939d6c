"""``POST /rpc``: on the embedded chain, the chain as a JSON-RPC 2.0 endpoint a browser wallet
adds as a network (``wallet_addEthereumChain`` with ``rpcUrls: [origin + "/rpc"]``, chain id the
home's). Allow-listed reads and ``eth_sendRawTransaction`` only
(:mod:`databright.chain.rpc_bridge`); batches; JSON-RPC error objects; bodies of at most
:data:`MAX_RPC_BYTES`. Every call holds the chain lock, and a sent transaction wakes the index
sync. On a real network ``/rpc`` is 404: the wallet talks to its own node.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from databright.chain.rpc_bridge import PARSE_ERROR, RpcBridge, RpcError
from databright.web.app.errors import ApiError
from databright.web.app.security import read_json_limited

router = APIRouter()
MAX_RPC_BYTES = 512 * 1024
MAX_BATCH = 50


def _answer(request: Request, payload: Any) -> Any:
    ctx = request.app.state.ctx
    with ctx.chain_lock:
        bridge = RpcBridge(ctx.dep.chain, after_send=ctx.synced_soon)
        return bridge.handle(payload)


@router.post("/rpc", tags=["chain"], openapi_extra={"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "properties": {
        "jsonrpc": {"type": "string", "enum": ["2.0"]}, "id": {"type": ["integer", "string"]},
        "method": {"type": "string"}, "params": {"type": "array"}}}}}}})
async def rpc(request: Request) -> Response:
    """The embedded chain's JSON-RPC endpoint (404 on a real network)."""
    if not request.app.state.ctx.is_embedded:
        raise ApiError(404, "not_found", "this server's chain is a real network: use your "
                       "wallet's own node")
    raw = await read_json_limited(request, MAX_RPC_BYTES)
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return JSONResponse({"jsonrpc": "2.0", "id": None,
                             "error": RpcError(PARSE_ERROR, "parse error").as_json()})
    if isinstance(payload, list) and len(payload) > MAX_BATCH:
        return JSONResponse({"jsonrpc": "2.0", "id": None, "error": RpcError(
            -32600, f"batches are limited to {MAX_BATCH} requests").as_json()})
    answer = await run_in_threadpool(_answer, request, payload)
    if answer is None:
        return Response(status_code=204)
    return JSONResponse(answer)
