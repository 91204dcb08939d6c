"""Stateful property test of the ModelRegistry: register/checkpoint/open/voucher/close/reclaim.

A plain-Python model follows every step. After each step: ether is conserved to the wei (what
the registry holds equals open deposits + credits + held dividends, and nothing is created or
lost across all accounts); no payee is ever credited more than the highest voucher its payer
signed for that channel; the royalty of every close is at least the dataset's floor; a model's
best metric never decreases and is always an attested one. Vouchers for another channel, chain
or registry, forged ones and over-deposit ones are tried and must be refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boa
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from databright.chain.model_registry import Attestation, Voucher, sign, split_royalty
from tests.contracts.conftest import ETHER, ZERO, deployers, new_account
from tests.contracts.test_model_registry import (
    CHALLENGE,
    forget_storage_traces,
    key_account,
    refusing_token,
    registry_deployer,
    terms_deployer,
)

BPS = 10_000
FLOORS = {1: 2_000, 2: 500}
FEES = {1: ETHER // 10, 2: 3 * 10**15 + 1}
ENTRIES = 4
OPEN, RECLAIMING, CLOSED, RECLAIMED = 1, 2, 3, 4


@dataclass
class ChannelModel:
    payer: Any
    model_id: int
    deposit: int
    expiry: int
    status: int = OPEN
    reclaim_at: int = 0
    signed: list[int] = field(default_factory=list)  # cumulative amounts, in signing order
    paid: int | None = None


class RegistryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        forget_storage_traces()
        self.terms = terms_deployer().deploy()
        self.registry = registry_deployer().deploy(self.terms.address, CHALLENGE)
        self.other_registry = registry_deployer().deploy(self.terms.address, CHALLENGE)
        owner, holder = new_account(), new_account()
        self.token = deployers().token.deploy("Shares", "SHR", owner)
        with boa.env.prank(owner):
            self.token.mint(holder, 3 * ETHER)
        self.flaky = refusing_token()  # dataset 2's token refuses until switched on
        self.evaluator = key_account()
        self.stranger = key_account()
        self.terms.set_terms(
            1, self.token.address, self.evaluator.address, FEES[1], FLOORS[1], ENTRIES
        )
        self.terms.set_terms(
            2, self.flaky.address, self.evaluator.address, FEES[2], FLOORS[2], ENTRIES
        )
        self.devs = [new_account(10**6 * ETHER) for _ in range(2)]
        self.payers = [key_account(10**6 * ETHER) for _ in range(2)]
        self.people = [*self.devs, *(p.address for p in self.payers)]
        self.models: dict[int, tuple[str, int, int]] = {}  # id -> (owner, dataset, royalty)
        self.best: dict[int, int] = {}
        # (model, checkpoint) -> (sha256, entries, attested)
        self.checkpoints: dict[tuple[int, int], tuple[bytes, int, bool]] = {}
        self.channels: dict[int, ChannelModel] = {}
        self.owed = {a: 0 for a in self.people}
        self.held = {1: 0, 2: 0}
        self.dividends = {1: 0, 2: 0}  # wei that reached each dataset's token
        self.credited_to_payee: dict[int, int] = {}
        self.watched = [*self.people, self.registry.address, self.token.address, self.flaky.address]
        self.total = self._ether()

    # --- helpers ------------------------------------------------------------------------------

    def _ether(self) -> int:
        return sum(boa.env.get_balance(a) for a in self.watched)

    def _now(self) -> int:
        return int(boa.env.evm.patch.timestamp)

    def _pay(self, dataset_id: int, amount: int) -> None:
        if amount == 0:
            return
        if dataset_id == 2 and self.flaky.refuse():
            self.held[2] += amount
        else:
            self.dividends[dataset_id] += amount

    def _voucher(self, channel_id: int, amount: int, **kw: Any) -> Voucher:
        fields: dict[str, Any] = {
            "chain_id": boa.env.evm.patch.chain_id,
            "registry": self.registry.address,
            "channel_id": channel_id,
            "amount": amount,
        }
        fields.update(kw)
        return Voucher(**fields)

    # --- rules --------------------------------------------------------------------------------

    @rule(dev=st.integers(0, 1), dataset_id=st.sampled_from([1, 2]), extra=st.integers(0, 8_000))
    def register(self, dev: int, dataset_id: int, extra: int) -> None:
        owner = self.devs[dev]
        royalty = FLOORS[dataset_id] + extra
        with boa.env.prank(owner):
            model_id = self.registry.register(
                dataset_id, "m", b"\x01" * 32, 1, royalty, value=FEES[dataset_id]
            )
        self.models[model_id] = (owner, dataset_id, royalty)
        self.best[model_id] = -1
        self._pay(dataset_id, FEES[dataset_id])

    @precondition(lambda self: self.models)
    @rule(
        data=st.data(),
        metric=st.integers(0, BPS),
        signer=st.sampled_from(["evaluator", "stranger", "none", "other-model"]),
        entries=st.integers(1, ENTRIES),
    )
    def submit_checkpoint(self, data: Any, metric: int, signer: str, entries: int) -> None:
        model_id = data.draw(st.sampled_from(sorted(self.models)))
        owner, dataset_id, _ = self.models[model_id]
        sha = bytes([model_id % 256]) * 31 + bytes([metric % 256])
        attested_for = model_id + 1 if signer == "other-model" else model_id
        a = Attestation(
            boa.env.evm.patch.chain_id,
            self.registry.address,
            attested_for,
            sha,
            dataset_id,
            entries,
            metric,
        )
        key = self.stranger if signer == "stranger" else self.evaluator
        sig = b"" if signer == "none" else sign(a, key)
        before = self.registry.get_model(model_id).best_metric_bps
        with boa.env.prank(owner):
            number = self.registry.submit_checkpoint(
                model_id, "bafkreick", sha, entries, metric, sig, value=FEES[dataset_id]
            )
        self._pay(dataset_id, FEES[dataset_id])
        attested = signer == "evaluator"
        assert (self.registry.get_checkpoint(model_id, number).attestor != ZERO) == attested
        self.checkpoints[(model_id, number)] = (sha, entries, attested)
        if attested and metric > self.best[model_id]:
            self.best[model_id] = metric
        m = self.registry.get_model(model_id)
        assert m.best_metric_bps >= before
        assert m.best_metric_bps == max(self.best[model_id], 0)

    @precondition(lambda self: self.checkpoints)
    @rule(
        data=st.data(),
        metric=st.integers(0, BPS),
        signer=st.sampled_from(["evaluator", "stranger", "other-snapshot"]),
    )
    def attest(self, data: Any, metric: int, signer: str) -> None:
        """A self-reported checkpoint attested later: only by a trusted signer, only once, only
        over the checkpoint's own hash and snapshot; the best metric never decreases."""
        model_id, number = data.draw(st.sampled_from(sorted(self.checkpoints)))
        sha, entries, attested = self.checkpoints[(model_id, number)]
        _, dataset_id, _ = self.models[model_id]
        signed_entries = entries % ENTRIES + 1 if signer == "other-snapshot" else entries
        a = Attestation(
            boa.env.evm.patch.chain_id, self.registry.address, model_id, sha, dataset_id,
            signed_entries, metric,
        )
        key = self.stranger if signer == "stranger" else self.evaluator
        before = self.registry.get_model(model_id).best_metric_bps
        sender = self.payers[0].address  # anyone may deliver an attestation
        if attested:
            with boa.reverts("registry: already attested"), boa.env.prank(sender):
                self.registry.attest(model_id, number, metric, sign(a, key))
            return
        if signer != "evaluator" and signed_entries != entries or signer == "stranger":
            with boa.reverts("registry: untrusted attestor"), boa.env.prank(sender):
                self.registry.attest(model_id, number, metric, sign(a, key))
            assert self.registry.get_checkpoint(model_id, number).attestor == ZERO
            return
        with boa.env.prank(sender):
            self.registry.attest(model_id, number, metric, sign(a, key))
        self.checkpoints[(model_id, number)] = (sha, entries, True)
        cp = self.registry.get_checkpoint(model_id, number)
        assert (cp.attestor, cp.metric_bps, cp.entries) == (self.evaluator.address, metric, entries)
        self.best[model_id] = max(self.best[model_id], metric)
        assert self.registry.get_model(model_id).best_metric_bps >= before

    @precondition(lambda self: self.models)
    @rule(
        data=st.data(),
        payer=st.integers(0, 1),
        deposit=st.integers(1, 10 * ETHER),
        timeout=st.integers(1, 7 * 86400),
    )
    def open_channel(self, data: Any, payer: int, deposit: int, timeout: int) -> None:
        model_id = data.draw(st.sampled_from(sorted(self.models)))
        account = self.payers[payer]
        with boa.env.prank(account.address):
            channel_id = self.registry.open_channel(model_id, timeout, value=deposit)
        self.channels[channel_id] = ChannelModel(account, model_id, deposit, self._now() + timeout)

    @precondition(lambda self: self.channels)
    @rule(data=st.data(), step=st.integers(0, 3 * ETHER))
    def sign_voucher(self, data: Any, step: int) -> None:
        """The payer signs a higher cumulative amount (possibly above the deposit)."""
        channel_id = data.draw(st.sampled_from(sorted(self.channels)))
        c = self.channels[channel_id]
        c.signed.append((c.signed[-1] if c.signed else 0) + step)

    @precondition(lambda self: any(c.status == OPEN for c in self.channels.values()))
    @rule(data=st.data(), value=st.integers(1, ETHER))
    def top_up(self, data: Any, value: int) -> None:
        channel_id = data.draw(
            st.sampled_from(sorted(i for i, c in self.channels.items() if c.status == OPEN))
        )
        c = self.channels[channel_id]
        with boa.env.prank(c.payer.address):
            assert self.registry.top_up(channel_id, value=value) == c.deposit + value
        c.deposit += value

    @precondition(lambda self: any(c.signed for c in self.channels.values()))
    @rule(
        data=st.data(),
        pick=st.sampled_from(
            [
                "latest",
                "earlier",
                "forged",
                "other-chain",
                "other-registry",
                "other-channel",
                "unsigned-amount",
            ]
        ),
    )
    def close(self, data: Any, pick: str) -> None:
        channel_id = data.draw(
            st.sampled_from(sorted(i for i, c in self.channels.items() if c.signed))
        )
        c = self.channels[channel_id]
        owner, dataset_id, royalty_bps = self.models[c.model_id]
        amount = c.signed[-1] if pick != "earlier" else data.draw(st.sampled_from(c.signed))
        v = self._voucher(channel_id, amount)
        if pick == "forged":
            sig = sign(v, self.stranger)
        elif pick == "other-chain":
            sig = sign(self._voucher(channel_id, amount, chain_id=v.chain_id + 1), c.payer)
        elif pick == "other-registry":
            sig = sign(
                self._voucher(channel_id, amount, registry=self.other_registry.address), c.payer
            )
        elif pick == "other-channel":
            sig = sign(self._voucher(channel_id + 1, amount), c.payer)
        elif pick == "unsigned-amount":
            amount += 1  # a signature for `amount`, claimed for one wei more
            sig = sign(v, c.payer)
        else:
            sig = sign(v, c.payer)
        valid = pick in ("latest", "earlier")
        if c.status not in (OPEN, RECLAIMING):
            reason = "registry: channel not open"
        elif amount > c.deposit:
            reason = "registry: voucher exceeds deposit"
        elif not valid:
            reason = "registry: bad voucher"
        else:
            reason = None
        if reason is not None:
            with boa.env.prank(owner), boa.reverts(reason):
                self.registry.close(channel_id, amount, sig)
            return
        with boa.env.prank(owner):
            self.registry.close(channel_id, amount, sig)
        closed = next(
            log
            for log in self.registry.get_logs()
            if log.address == self.registry.address and type(log).__name__ == "ChannelClosed"
        )
        royalty, payee_amount = split_royalty(amount, royalty_bps)
        assert (closed.royalty, closed.payee_amount, closed.refund) == (
            royalty,
            payee_amount,
            c.deposit - amount,
        )
        # the dataset's floor holds on every close, whatever the model chose
        assert closed.royalty * BPS >= amount * FLOORS[dataset_id]
        # what the chain says it paid out of the payer's deposit, not what we asked for
        c.status, c.paid = CLOSED, int(closed.amount)
        self.owed[owner] += payee_amount
        self.owed[c.payer.address] += c.deposit - amount
        self.credited_to_payee[channel_id] = int(closed.payee_amount + closed.royalty)
        self._pay(dataset_id, royalty)

    @rule(seconds=st.sampled_from([60, 3600, 86400, 7 * 86400]))
    def wait(self, seconds: int) -> None:
        boa.env.time_travel(seconds=seconds)

    @precondition(lambda self: self.channels)
    @rule(data=st.data())
    def start_reclaim(self, data: Any) -> None:
        channel_id = data.draw(st.sampled_from(sorted(self.channels)))
        c = self.channels[channel_id]
        with boa.env.prank(c.payer.address):
            if c.status != OPEN:
                with boa.reverts("registry: channel not open"):
                    self.registry.start_reclaim(channel_id)
            elif self._now() < c.expiry:
                with boa.reverts("registry: channel not expired"):
                    self.registry.start_reclaim(channel_id)
            else:
                c.reclaim_at = self.registry.start_reclaim(channel_id)
                assert c.reclaim_at == self._now() + CHALLENGE
                c.status = RECLAIMING

    @precondition(lambda self: self.channels)
    @rule(data=st.data())
    def reclaim(self, data: Any) -> None:
        channel_id = data.draw(st.sampled_from(sorted(self.channels)))
        c = self.channels[channel_id]
        with boa.env.prank(c.payer.address):
            if c.status != RECLAIMING:
                with boa.reverts("registry: reclaim not started"):
                    self.registry.reclaim(channel_id)
            elif self._now() < c.reclaim_at:
                with boa.reverts("registry: challenge window open"):
                    self.registry.reclaim(channel_id)
            else:
                assert self.registry.reclaim(channel_id) == c.deposit
                c.status = RECLAIMED
                self.owed[c.payer.address] += c.deposit

    @rule(who=st.integers(0, 3))
    def withdraw(self, who: int) -> None:
        account = self.people[who]
        with boa.env.prank(account):
            if self.owed[account] == 0:
                with boa.reverts("registry: nothing to withdraw"):
                    self.registry.withdraw()
            else:
                assert self.registry.withdraw() == self.owed[account]
                self.owed[account] = 0

    @rule(refuse=st.booleans())
    def switch_dataset_two(self, refuse: bool) -> None:
        self.flaky.set_refuse(refuse)

    @rule()
    def release_held(self) -> None:
        if self.held[2] == 0:
            with boa.reverts("registry: nothing held"):
                self.registry.release_held(2)
        elif self.flaky.refuse():
            with boa.reverts("shares: no holders"):
                self.registry.release_held(2)
        else:
            assert self.registry.release_held(2) == self.held[2]
            self.dividends[2] += self.held[2]
            self.held[2] = 0

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def ether_is_conserved_to_the_wei(self) -> None:
        live = sum(c.deposit for c in self.channels.values() if c.status in (OPEN, RECLAIMING))
        owed = sum(self.owed.values())
        for account, amount in self.owed.items():
            assert self.registry.owed_of(account) == amount
        assert self.registry.held_of(2) == self.held[2] and self.registry.held_of(1) == 0
        assert boa.env.get_balance(self.registry.address) == live + owed + self.held[2]
        assert self.token.total_distributed() == self.dividends[1]
        assert self.flaky.received() == self.dividends[2]
        assert self._ether() == self.total

    @invariant()
    def payee_never_gets_more_than_the_highest_voucher(self) -> None:
        for channel_id, credited in self.credited_to_payee.items():
            c = self.channels[channel_id]
            assert c.paid is not None and credited == c.paid
            assert credited <= max(c.signed) and credited <= c.deposit

    @invariant()
    def best_is_attested_and_never_decreases(self) -> None:
        for model_id, best in self.best.items():
            m = self.registry.get_model(model_id)
            assert m.best_metric_bps == max(best, 0)
            if m.best_checkpoint:
                cp = self.registry.get_checkpoint(model_id, m.best_checkpoint)
                assert cp.attestor == self.evaluator.address
                assert cp.metric_bps == m.best_metric_bps
            else:
                assert best == -1


RegistryMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestRegistryProperties = RegistryMachine.TestCase


@pytest.mark.slow
def test_registry_properties_long():
    """The same machine with many more and longer runs (CI's slow job)."""
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        RegistryMachine,
        settings=settings(
            max_examples=80,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
