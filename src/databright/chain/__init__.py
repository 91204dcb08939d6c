"""The chain layer: Vyper contracts compiled and deployed, typed wrappers, and two kinds of chain.

Entry points (see ``docs/chain.md``):

* :func:`databright.chain.provider.open_chain` — the embedded persisted chain or a JSON-RPC URL,
  as a :class:`~databright.chain.provider.Chain`;
* :class:`databright.chain.accounts.Keystore` — encrypted keystore accounts;
* :func:`databright.chain.deploy.deploy_market` — ShareToken blueprint + DataMarket;
* :class:`databright.chain.data_market.DataMarket`,
  :class:`databright.chain.share_token.ShareToken` — one thin wrapper per contract.

Nothing is imported here, so ``import databright.chain`` stays cheap.
"""
