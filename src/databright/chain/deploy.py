"""Deploy the contracts: ShareToken as an EIP-5202 blueprint, then DataMarket pointing at it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from databright.chain.compile import CompiledContract, compile_contract
from databright.chain.provider import Chain
from databright.errors import ChainError

_BLUEPRINT_PREAMBLE = bytes.fromhex("fe7100")  # EIP-5202: INVALID, version 0, no data section


def _created_address(receipt: Any, what: str) -> str:
    address = receipt.get("contractAddress")
    if not address:
        raise ChainError(f"deploying {what} created no contract (tx {receipt['transactionHash']})")
    return Web3.to_checksum_address(address)


def deploy_contract(
    chain: Chain, compiled: CompiledContract, deployer: LocalAccount, *args: Any
) -> str:
    """Deploy ``compiled`` with constructor ``args``; returns the new contract's address."""
    factory = chain.w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
    receipt = chain.send(factory.constructor(*args), deployer)
    return _created_address(receipt, compiled.name)


def deploy_blueprint(chain: Chain, compiled: CompiledContract, deployer: LocalAccount) -> str:
    """Deploy ``compiled`` as an EIP-5202 blueprint (code that can only be copied, not called).

    Raises:
        ChainError: the deployed code does not carry the blueprint preamble.
    """
    receipt = chain.send({"data": compiled.blueprint_bytecode}, deployer)
    address = _created_address(receipt, f"{compiled.name} blueprint")
    with chain.translating():
        code = bytes(chain.w3.eth.get_code(Web3.to_checksum_address(address)))
    if not code.startswith(_BLUEPRINT_PREAMBLE):
        raise ChainError(f"{address} does not hold an EIP-5202 blueprint of {compiled.name}")
    return address


DEFAULT_CHALLENGE_PERIOD = 86_400  # seconds a payee has to close a channel its payer reclaims
DEFAULT_MIN_STAKE = 10**16  # wei a compute worker stakes at least (0.01 ETH)
DEFAULT_COOLDOWN = 3_600  # seconds a leaving worker waits before its stake is returned


def deploy_market(
    chain: Chain,
    deployer_account: LocalAccount,
    cache_dir: Path | str | None = None,
    *,
    challenge_period: int = DEFAULT_CHALLENGE_PERIOD,
    min_stake: int = DEFAULT_MIN_STAKE,
    cooldown: int = DEFAULT_COOLDOWN,
) -> dict[str, str]:
    """Deploy the ShareToken blueprint, a DataMarket that makes its tokens from it, a
    ModelRegistry that reads the market's dataset terms (the deployer owns the registry) and a
    ComputeMarket over the same terms and that registry (no owner; prediction jobs read a
    model's terms there).

    Args:
        chain: where to deploy.
        deployer_account: pays for the deployments.
        cache_dir: compile cache (default: see :func:`~databright.chain.compile.default_cache_dir`).
        challenge_period: the registry's channel challenge window in seconds.
        min_stake: the compute market's least worker stake (wei).
        cooldown: seconds the compute market keeps a leaving worker's stake.

    Returns:
        ``{"DataMarket": …, "ShareTokenBlueprint": …, "ModelRegistry": …, "ComputeMarket": …}``
        (addresses).
    """
    token = compile_contract("ShareToken", cache_dir)
    market = compile_contract("DataMarket", cache_dir)
    registry = compile_contract("ModelRegistry", cache_dir)
    compute = compile_contract("ComputeMarket", cache_dir)
    blueprint = deploy_blueprint(chain, token, deployer_account)
    market_address = deploy_contract(chain, market, deployer_account, blueprint)
    registry_address = deploy_contract(
        chain, registry, deployer_account, market_address, int(challenge_period)
    )
    compute_address = deploy_contract(
        chain, compute, deployer_account, market_address, registry_address, int(min_stake),
        int(cooldown),
    )
    return {
        "DataMarket": market_address,
        "ShareTokenBlueprint": blueprint,
        "ModelRegistry": registry_address,
        "ComputeMarket": compute_address,
    }
