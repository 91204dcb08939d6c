"""Creating a home (embedded chain with contracts deployed) or attaching to a deployment."""

from __future__ import annotations

import os
from dataclasses import dataclass

from databright.errors import ConfigError, UsageError
from databright.home import EMBEDDED, Config, Home
from databright.market.context import Deployment

DEV_FUNDING_WEI = 100 * 10**18  # what the embedded faucet gives a new account


@dataclass(frozen=True)
class AccountRef:
    """An account of the keystore: its name and address."""

    name: str
    address: str


@dataclass(frozen=True)
class HomeInfo:
    """What a home holds: where its chain, store and index are, and how much is on chain."""

    home: str
    created: bool
    chain: str
    chain_id: int | None
    contracts: dict[str, str]
    store: str
    db: str
    accounts: tuple[AccountRef, ...]
    datasets: int
    proposals: int
    block: int


@dataclass(frozen=True)
class AccountInfo:
    """One keystore account with its balance; ``default`` if it signs when no ``--as`` is given."""

    name: str
    address: str
    balance_wei: int
    default: bool


@dataclass(frozen=True)
class NewAccount:
    """An account just created, with what the dev faucet gave it (0 on a real network)."""

    name: str
    address: str
    funded_wei: int
    default: bool


def init_home(
    home: Home,
    *,
    chain: str | None = None,
    market: str | None = None,
    registry: str | None = None,
    store: str | None = None,
    db: str | None = None,
) -> HomeInfo:
    """Create or attach a home; re-running on an existing home only reports what is there.

    ``market`` (and optionally ``registry``, a ModelRegistry over that market) attach existing
    contracts instead of deploying them."""
    if registry and not market:
        raise UsageError("--registry attaches a ModelRegistry of an existing market: give --market")
    if home.exists():
        config = home.load()
        asked = {"chain": chain, "store": store, "db": db}
        clash = [k for k, v in asked.items() if v and v != getattr(config, k) and
                 not (k == "chain" and v == EMBEDDED and config.chain == EMBEDDED)]
        if market and market != config.contracts.get("DataMarket"):
            clash.append("market")
        if registry and registry != config.contracts.get("ModelRegistry"):
            clash.append("registry")
        if clash:
            raise UsageError(
                f"{home.path} is already initialised with other settings ({', '.join(clash)}); "
                "use another --home or edit config.json"
            )
        with Deployment(home) as dep:
            return describe(dep, created=False)
    config = Config(chain=chain or EMBEDDED, store=store, db=db)
    home.path.mkdir(parents=True, exist_ok=True)
    home.keystore_dir.mkdir(exist_ok=True)
    if config.store is None:
        home.store_dir.mkdir(exist_ok=True)
    # The config is written last but one: a crash before it leaves a folder `init` can redo.
    dep = Deployment(home)
    dep.__dict__["config"] = config
    try:
        config.chain_id = dep.chain.chain_id
        if market:
            config.contracts = {"DataMarket": _checked_market(dep, market)}
            if registry:
                config.contracts["ModelRegistry"] = _checked_registry(dep, market, registry)
        else:
            config.contracts = _deploy(dep)
        _ = dep.index  # creates and migrates the index
        home.save(config)
        return describe(dep, created=True)
    finally:
        dep.close()


def _deploy(dep: Deployment) -> dict[str, str]:
    from databright.chain.deploy import deploy_market

    if dep.chain.is_embedded:
        from databright.chain.embedded import faucet_account

        deployer = faucet_account()
    else:
        key = os.environ.get("DATABRIGHT_DEPLOYER_KEY")
        if not key:
            raise UsageError(
                "to deploy on a JSON-RPC chain set DATABRIGHT_DEPLOYER_KEY to a funded key, "
                "or attach to existing contracts with --market ADDRESS"
            )
        from databright.chain.accounts import signer_from_key

        try:
            deployer = signer_from_key(key)
        except UsageError as exc:
            raise UsageError(f"DATABRIGHT_DEPLOYER_KEY: {exc}") from None
    return dict(deploy_market(dep.chain, deployer))


def _checked_market(dep: Deployment, address: str) -> str:
    from databright.chain.wrapper import checksum

    address = checksum(address)
    if not dep.chain.has_code(address):
        raise ConfigError(f"no contract at {address} on {dep.config.chain}")
    return address


def _checked_registry(dep: Deployment, market: str, address: str) -> str:
    from databright.chain.model_registry import ModelRegistry
    from databright.chain.wrapper import checksum

    address = _checked_market(dep, address)
    terms = ModelRegistry(dep.chain, address).data_terms()
    if terms != checksum(market):
        raise ConfigError(f"the ModelRegistry at {address} reads terms from {terms}, not {market}")
    return address


def describe(dep: Deployment, *, created: bool) -> HomeInfo:
    """The home's settings and what its chain holds."""
    config = dep.config
    return HomeInfo(
        home=str(dep.home.path),
        created=created,
        chain=config.chain,
        chain_id=config.chain_id,
        contracts=dict(config.contracts),
        store=dep.home.store_url(config),
        db=dep.home.db_url(config),
        accounts=tuple(AccountRef(n, a) for n, a in dep.keystore.list()),
        datasets=dep.market.dataset_count(),
        proposals=dep.market.proposal_count(),
        block=dep.chain.block_number(),
    )


def new_account(dep: Deployment, name: str, password: str, *, fund: bool = True,
                fast_kdf: bool = False) -> NewAccount:
    """Create an encrypted key; on the embedded chain the dev faucet funds it."""
    from databright.chain.accounts import Keystore

    keystore = (Keystore(dep.home.keystore_dir, kdf="pbkdf2", iterations=2048) if fast_kdf
                else dep.keystore)
    address = keystore.new(name, password)
    funded = 0
    if fund and dep.chain.is_embedded:
        dep.chain.fund(address, DEV_FUNDING_WEI)
        funded = DEV_FUNDING_WEI
    if dep.config.default_account is None:
        dep.config.default_account = name
        dep.home.save(dep.config)
    return NewAccount(name=name, address=address, funded_wei=funded,
                      default=dep.config.default_account == name)


def import_account(dep: Deployment, name: str, key: str, password: str) -> AccountInfo:
    """Keep an existing private key (e.g. a funded account on a real network) in the keystore."""
    dep.keystore.import_key(name, key.strip(), password)
    if dep.config.default_account is None:
        dep.config.default_account = name
        dep.home.save(dep.config)
    return account_info(dep, name)


def account_info(dep: Deployment, name: str) -> AccountInfo:
    """Account ``name`` with its balance on the home's chain."""
    address = dep.keystore.address_of(name)
    return AccountInfo(name=name, address=address, balance_wei=dep.chain.balance(address),
                       default=dep.config.default_account == name)
