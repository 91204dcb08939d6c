"""The compute market from the market's side: the coordinator's identity, the worker pool, jobs
run under triple modular redundancy, receipts and their settlement on chain.

``databright.compute`` holds the pure parts (task specs, gradients, the exposure ledger, the
scheduler, TMR verdicts, the lease board); this package wires them to the chain, the store and
the index of a home. See ``docs/compute-market.md``.
"""
