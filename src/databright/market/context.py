"""One open deployment: the home's config, chain, blob store, index and keystore.

Opened once per command (or per web request handler) and closed after; the embedded chain's
lock is held from the first chain access until ``close``.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, Self

from databright.errors import ConfigError
from databright.home import Config, Home

if TYPE_CHECKING:
    from databright.chain.accounts import Keystore
    from databright.chain.compute_market import ComputeMarket
    from databright.chain.data_market import DataMarket
    from databright.chain.model_registry import ModelRegistry
    from databright.chain.provider import Chain
    from databright.chain.share_token import ShareToken
    from databright.index.db import Index
    from databright.storage.cas import BlobStore


class Deployment:
    """Lazy handles on everything a home names; use as a context manager."""

    def __init__(self, home: Home | str | None = None, *, on_wait: Any = None) -> None:
        self.home = home if isinstance(home, Home) else Home(home)
        self._on_wait = on_wait
        self._tokens: dict[str, ShareToken] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @cached_property
    def config(self) -> Config:
        return self.home.load()

    @cached_property
    def store(self) -> BlobStore:
        from databright.storage.cas import open_store

        return open_store(self.home.store_url(self.config))

    @cached_property
    def index(self) -> Index:
        from databright.index.db import open_index

        return open_index(self.home.db_url(self.config))

    @cached_property
    def keystore(self) -> Keystore:
        from databright.chain.accounts import Keystore

        return Keystore(self.home.keystore_dir)

    @cached_property
    def chain(self) -> Chain:
        from databright.chain.provider import open_chain

        return open_chain(self.home, self.config, on_wait=self._on_wait)

    @cached_property
    def market(self) -> DataMarket:
        from databright.chain.data_market import DataMarket

        address = self.config.contracts.get("DataMarket")
        if not address:
            raise ConfigError(
                f"the home at {self.home.path} names no DataMarket contract: "
                "run `databright init` (or `init --market ADDRESS` to attach)"
            )
        return DataMarket(self.chain, address)

    @cached_property
    def registry(self) -> ModelRegistry:
        from databright.chain.model_registry import ModelRegistry

        address = self.config.contracts.get("ModelRegistry")
        if not address:
            raise ConfigError(
                f"the home at {self.home.path} names no ModelRegistry contract: attach one with "
                "`databright init --market ADDRESS --registry ADDRESS` in a new home"
            )
        return ModelRegistry(self.chain, address)

    @cached_property
    def compute(self) -> ComputeMarket:
        from databright.chain.compute_market import ComputeMarket

        address = self.config.contracts.get("ComputeMarket")
        if not address:
            raise ConfigError(
                f"the home at {self.home.path} names no ComputeMarket contract: homes created "
                "before the compute market have none; create a new home with `databright init`"
            )
        return ComputeMarket(self.chain, address)

    def token(self, address: str) -> ShareToken:
        """The ShareToken wrapper at ``address`` (cached)."""
        from databright.chain.share_token import ShareToken

        if address not in self._tokens:
            self._tokens[address] = ShareToken(self.chain, address)
        return self._tokens[address]

    def resolve_address(self, who: str) -> str:
        """An account name from the keystore, or a 0x address (checksummed).

        Raises:
            UsageError: ``who`` starts with 0x but is not an address.
            NotFoundError: no account of that name.
        """
        from databright.chain.wrapper import checksum

        if who.startswith("0x"):
            return checksum(who)
        return self.keystore.address_of(who)

    def close(self) -> None:
        """Release the chain (and its lock) and the index."""
        if "chain" in self.__dict__:
            self.__dict__.pop("chain").close()
        if "index" in self.__dict__:
            self.__dict__.pop("index").close()
