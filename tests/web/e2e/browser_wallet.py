"""An EIP-1193 test wallet for a real Chromium: ``window.ethereum`` (and an EIP-6963
announcement) installed by an init script, every request forwarded to Python, which signs with
an eth-account key and talks to the server's JSON-RPC endpoint (``/rpc``) like a wallet talks to
its network.

``mode`` changes what the wallet does, for the refusal tests: ``"honest"``, or
``"wrong-signer"`` (``personal_sign`` answers with another key's signature).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data

INIT_SCRIPT = """
(() => {
  const listeners = {};
  const provider = {
    isDataBrightTestWallet: true,
    async request({ method, params }) {
      const raw = await window.__dbWallet(method, JSON.stringify(params || []));
      const reply = JSON.parse(raw);
      if (reply.error) {
        const err = new Error(reply.error.message);
        err.code = reply.error.code;
        throw err;
      }
      return reply.result;
    },
    on(event, fn) { (listeners[event] = listeners[event] || []).push(fn); },
    removeListener(event, fn) {
      listeners[event] = (listeners[event] || []).filter((f) => f !== fn);
    },
  };
  window.ethereum = provider;
  const info = { uuid: "4f8b6a52-3f0e-4d58-9a4c-1c5d0b7e9a01", name: "DataBright Test Wallet",
                 icon: "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E",
                 rdns: "org.databright.testwallet" };
  const announce = () => window.dispatchEvent(new CustomEvent("eip6963:announceProvider",
    { detail: Object.freeze({ info, provider }) }));
  window.addEventListener("eip6963:requestProvider", announce);
  announce();
})();
"""


class BrowserWallet:
    """One account's wallet, bound to one page (``install(page)``)."""

    def __init__(self, key: bytes, rpc_url: str) -> None:
        self.account = Account.from_key(key)
        self.address = self.account.address
        self.rpc_url = rpc_url
        self.mode = "honest"
        self.calls: list[str] = []
        self.sent: list[str] = []
        self.signed_messages: list[str] = []
        self._other = Account.create()
        self._http = httpx.Client(timeout=60)
        self._id = 0

    def install(self, page: Any) -> None:
        page.expose_function("__dbWallet", self._handle)
        page.add_init_script(INIT_SCRIPT)

    def rpc(self, method: str, params: list[Any]) -> Any:
        self._id += 1
        reply = self._http.post(self.rpc_url, json={"jsonrpc": "2.0", "id": self._id,
                                                    "method": method, "params": params}).json()
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def _handle(self, method: str, params_json: str) -> str:
        self.calls.append(method)
        try:
            result = self._answer(method, json.loads(params_json))
            return json.dumps({"result": result})
        except Exception as exc:  # noqa: BLE001 - the page sees an EIP-1193 error, as a wallet's
            return json.dumps({"error": {"code": 4001 if isinstance(exc, PermissionError)
                                         else -32603, "message": str(exc)}})

    def _answer(self, method: str, params: list[Any]) -> Any:
        if method in ("eth_requestAccounts", "eth_accounts"):
            return [self.address]
        if method == "personal_sign":
            data = params[0]
            text = bytes.fromhex(data[2:]).decode() if data.startswith("0x") else data
            self.signed_messages.append(text)
            key = self._other if self.mode == "wrong-signer" else self.account
            signed = key.sign_message(encode_defunct(text=text))
            return "0x" + bytes(signed.signature).hex()
        if method == "eth_signTypedData_v4":
            doc = json.loads(params[1]) if isinstance(params[1], str) else params[1]
            signed = self.account.sign_message(encode_typed_data(full_message=doc))
            return "0x" + bytes(signed.signature).hex()
        if method == "eth_sendTransaction":
            return self._send(params[0])
        if method in ("wallet_addEthereumChain", "wallet_switchEthereumChain"):
            return None
        return self.rpc(method, params)

    def _send(self, tx: dict[str, Any]) -> str:
        if tx.get("from") and tx["from"].lower() != self.address.lower():
            raise PermissionError(f"this wallet holds {self.address}, not {tx['from']}")
        chain_id = int(self.rpc("eth_chainId", []), 16)
        nonce = int(self.rpc("eth_getTransactionCount", [self.address, "pending"]), 16)
        value = int(tx.get("value") or "0x0", 16) if isinstance(tx.get("value"), str) \
            else int(tx.get("value") or 0)
        call = {"from": self.address, "to": tx["to"], "data": tx.get("data", "0x"),
                "value": hex(value)}
        gas = int(self.rpc("eth_estimateGas", [call]), 16)
        gas_price = int(self.rpc("eth_gasPrice", []), 16)
        signed = self.account.sign_transaction({
            "chainId": chain_id, "nonce": nonce, "to": tx["to"], "data": tx.get("data", "0x"),
            "value": value, "gas": gas * 12 // 10 + 10_000, "maxFeePerGas": gas_price * 2,
            "maxPriorityFeePerGas": min(gas_price, 10**9), "type": 2})
        tx_hash = self.rpc("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])
        self.sent.append(tx_hash)
        return str(tx_hash)

    def close(self) -> None:
        self._http.close()
