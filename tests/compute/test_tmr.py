"""TMR verdicts: unanimity accepted as is, any disagreement recomputed, every liar named and
no honest or silent account; the verdict chain commits to every field of every verdict."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from databright.compute.tmr import GENESIS, Verdict, VerdictChain, decide
from databright.errors import IntegrityError, UsageError

RIGHT = hashlib.sha256(b"the honest gradient").hexdigest()
WRONGS = [hashlib.sha256(b"wrong %d" % k).hexdigest() for k in range(3)]
ACCOUNTS = ["0x" + f"{k:040x}" for k in (0xA, 0xB, 0xC)]


class Recompute:
    def __init__(self, digest: str = RIGHT) -> None:
        self.calls = 0
        self.digest = digest

    def __call__(self) -> str:
        self.calls += 1
        return self.digest


roles = st.lists(st.sampled_from(["honest", "liar", "silent"]), min_size=3, max_size=3)


@settings(max_examples=300)
@given(roles=roles, wrong=st.lists(st.sampled_from(WRONGS), min_size=3, max_size=3))
def test_every_liar_caught_no_honest_or_silent_named(roles: list[str], wrong: list[str]) -> None:
    digests = {a: RIGHT if r == "honest" else None if r == "silent" else w
               for a, r, w in zip(ACCOUNTS, roles, wrong)}
    recompute = Recompute()
    v = decide("t1", digests, recompute)
    liars = {a for a, r in zip(ACCOUNTS, roles) if r == "liar"}
    colluded = roles == ["liar"] * 3 and len(set(wrong)) == 1
    if roles == ["honest"] * 3 or colluded:
        # unanimous: accepted as it is (a wrong result only if all three replicas collude)
        assert recompute.calls == 0 and not v.recomputed and v.liars == ()
        assert v.accepted == (wrong[0] if colluded else RIGHT)
    else:
        assert recompute.calls == 1 and v.recomputed
        assert v.accepted == RIGHT
        assert set(v.liars) == liars  # two agreeing liars outvote nobody: the recompute decides
    assert not set(v.liars) & {a for a, r in zip(ACCOUNTS, roles) if r != "liar"}


def test_two_agreeing_liars_are_caught_by_the_recompute() -> None:
    digests = {ACCOUNTS[0]: WRONGS[0], ACCOUNTS[1]: WRONGS[0], ACCOUNTS[2]: RIGHT}
    v = decide("t2", digests, Recompute())
    assert v.accepted == RIGHT and v.liars == tuple(sorted(ACCOUNTS[:2])) and v.recomputed


def test_two_agreeing_results_and_a_silent_replica_are_still_recomputed() -> None:
    recompute = Recompute()
    v = decide("t3", {ACCOUNTS[0]: RIGHT, ACCOUNTS[1]: RIGHT, ACCOUNTS[2]: None}, recompute)
    assert recompute.calls == 1 and v.accepted == RIGHT and v.liars == ()


def test_malformed_digests_and_recomputations_are_refused() -> None:
    with pytest.raises(UsageError):
        decide("t", {ACCOUNTS[0]: "xyz", ACCOUNTS[1]: RIGHT, ACCOUNTS[2]: RIGHT}, Recompute())
    with pytest.raises(UsageError):
        decide("t", {ACCOUNTS[0]: RIGHT, ACCOUNTS[1]: None, ACCOUNTS[2]: RIGHT},
               Recompute("not a digest"))
    with pytest.raises(UsageError):  # one account twice, in two spellings
        decide("t", {ACCOUNTS[0]: RIGHT, ACCOUNTS[0].upper().replace("0X", "0x"): RIGHT,
                     ACCOUNTS[1]: RIGHT}, Recompute())


def chain_of(n: int) -> VerdictChain:
    chain = VerdictChain()
    for k in range(n):
        digests = {a: RIGHT if j != k % 3 else WRONGS[0] for j, a in enumerate(ACCOUNTS)}
        chain.append(decide(f"step{k}/shard0", digests, Recompute()))
    return chain


def test_the_chain_starts_at_genesis_and_links_each_verdict() -> None:
    assert VerdictChain().head == GENESIS
    chain = chain_of(4)
    head = GENESIS
    for v in chain:
        head = hashlib.sha256(bytes.fromhex(head) + v.canonical()).hexdigest()
    assert chain.head == head and len(chain) == 4
    assert chain.liars() == set(ACCOUNTS)


def test_the_chain_round_trips_and_refuses_any_change() -> None:
    chain = chain_of(3)
    again = VerdictChain.from_json(chain.to_json())
    assert again.head == chain.head and again.verdicts == chain.verdicts
    data = json.loads(chain.to_json())
    edits = [
        ("task", "step9/shard0"),
        ("accepted", WRONGS[1]),
        ("recomputed", False),
    ]
    for key, value in edits:
        changed = json.loads(chain.to_json())
        changed["verdicts"][1][key] = value
        with pytest.raises((IntegrityError, UsageError)):
            VerdictChain.from_json(json.dumps(changed))
    reordered = dict(data, verdicts=data["verdicts"][::-1])
    with pytest.raises(IntegrityError):
        VerdictChain.from_json(json.dumps(reordered))
    dropped = dict(data, verdicts=data["verdicts"][:-1])
    with pytest.raises(IntegrityError):
        VerdictChain.from_json(json.dumps(dropped))
    unnamed = json.loads(chain.to_json())
    unnamed["verdicts"][0]["liars"] = []  # a liar left out of the record
    with pytest.raises(UsageError):
        VerdictChain.from_json(json.dumps(unnamed))


@given(st.lists(st.tuples(st.sampled_from(ACCOUNTS), st.sampled_from([RIGHT, *WRONGS, None])),
                min_size=1, max_size=3, unique_by=lambda t: t[0]))
def test_any_field_change_moves_the_head(pairs: list[tuple[str, str | None]]) -> None:
    v = decide("t", dict(pairs), Recompute())
    base = VerdictChain.link(GENESIS, v)
    flipped = Verdict(v.task, v.digests, v.accepted, v.liars, not v.recomputed)
    other = Verdict(v.task + "x", v.digests, v.accepted, v.liars, v.recomputed)
    assert len({base, VerdictChain.link(GENESIS, flipped), VerdictChain.link(GENESIS, other)}) == 3


def test_an_audit_catches_three_colluding_replicas() -> None:
    digests = dict.fromkeys(ACCOUNTS, WRONGS[2])
    assert decide("t", digests, Recompute()).accepted == WRONGS[2]  # unanimous: not recomputed
    recompute = Recompute()
    v = decide("t", digests, recompute, audit=True)
    assert recompute.calls == 1 and v.accepted == RIGHT and v.liars == tuple(sorted(ACCOUNTS))
    honest = decide("t", dict.fromkeys(ACCOUNTS, RIGHT), Recompute(), audit=True)
    assert honest.recomputed and honest.liars == ()
