"""Run by the persistence tests in a separate process: ``python embedded_worker.py CMD HOME ...``.

Commands:
    inspect HOME ADDRESS...   print one JSON line: block number, time, balances, nonces
    churn HOME                send value transfers and mine empty blocks forever, printing the
                              block number after each committed block (the crash test kills it)
    hold HOME SECONDS         open the chain, print "held", keep it open SECONDS
    market HOME ADDRESS VOTER print one JSON line: what the DataMarket at ADDRESS holds
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from eth_account import Account

from databright.chain.embedded import faucet_account
from databright.chain.provider import open_chain
from databright.home import Config, Home


def main(argv: list[str]) -> None:
    cmd, home = argv[0], Home(Path(argv[1]))
    chain = open_chain(home, Config())
    try:
        if cmd == "inspect":
            addresses = argv[2:]
            out = {
                "block": chain.block_number(),
                "now": chain.now(),
                "balances": [chain.balance(a) for a in addresses],
                "nonces": [chain.w3.eth.get_transaction_count(a) for a in addresses],
            }
            print(json.dumps(out), flush=True)
        elif cmd == "churn":
            faucet = faucet_account()
            target = Account.create().address
            while True:
                chain.send({"to": target}, faucet, value=1, gas=21_000)
                print(chain.block_number(), flush=True)
                chain.embedded.mine_empty_blocks(3)  # type: ignore[union-attr]
                print(chain.block_number(), flush=True)
        elif cmd == "market":
            from databright.chain.data_market import DataMarket
            from databright.chain.share_token import ShareToken

            market = DataMarket(chain, argv[2])
            dataset = market.get_dataset(1)
            proposal = market.get_proposal(1)
            token = ShareToken(chain, dataset.share_token)
            out = {
                "block": chain.block_number(),
                "datasets": market.dataset_count(),
                "name": dataset.name,
                "status": proposal.status,
                "yes": proposal.yes,
                "voted": list(market.vote_of(1, argv[3])),
                "supply": token.totalSupply(),
            }
            print(json.dumps(out), flush=True)
        elif cmd == "hold":
            print("held", flush=True)
            time.sleep(float(argv[2]))
    finally:
        chain.close()


if __name__ == "__main__":
    main(sys.argv[1:])
