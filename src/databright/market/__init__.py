"""The domain: datasets, proposals, votes, shares, dividends, evaluations.

Every function takes an open :class:`Deployment` (a home's chain, store, index and keystore) and,
where it signs, an unlocked account::

    from databright.market import Deployment, datasets, proposals, money

    with Deployment("~/.databright") as dep:
        alice = dep.keystore.unlock("alice", "password")
        proposals.vote(dep, alice, 3, support=True)
        print(money.shares_of(dep, alice.address))

This layer holds no web3 or HTTP code: it orchestrates ``chain``, ``storage``, ``index`` and
``valuation``.
"""

from databright.market import data, datasets, deployment, evaluation, money, proposals
from databright.market.context import Deployment
from databright.market.rules import Rules

__all__ = ["Deployment", "Rules", "data", "datasets", "deployment", "evaluation", "money",
           "proposals"]
