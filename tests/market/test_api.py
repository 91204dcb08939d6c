"""The Python API a script uses: one Deployment, functions per concern."""

from __future__ import annotations

import pytest

from databright.errors import ContractRevert, NotFoundError
from databright.home import Home
from databright.market import Deployment, Rules, datasets, deployment, money, proposals

PASSWORD = "pw"


@pytest.fixture(scope="module")
def dep(tmp_path_factory, digit_folder):
    root = tmp_path_factory.mktemp("api")
    deployment.init_home(Home(root / "home"))
    with Deployment(root / "home") as dep:
        accounts = {}
        for name in ("ann", "ben", "cat"):
            deployment.new_account(dep, name, PASSWORD, fast_kdf=True)
            accounts[name] = dep.keystore.unlock(name, PASSWORD)
        dep.accounts = accounts
        dep.inputs = root
        datasets.create_dataset(dep, accounts["ann"], "pics", digit_folder(root / "seed", 0, 50),
                                rules=Rules(voting_period=3600, quorum_bps=5000))
        yield dep


def test_voting_power_is_frozen_at_the_snapshot(dep, digit_folder):
    ann, ben, cat = (dep.accounts[n] for n in ("ann", "ben", "cat"))
    pid = proposals.propose(dep, ben, "pics", digit_folder(dep.inputs / "b1", 100, 10)).proposal_id
    power = money.voting_power(dep, pid, ann.address)
    assert power == money.shares_of(dep, ann.address)[0].balance > 0
    # shares moved after the snapshot add no weight to the receiver and keep the sender's
    money.transfer(dep, ann, "pics", cat.address, power // 2)
    assert money.voting_power(dep, pid, cat.address) == 0
    with pytest.raises(ContractRevert, match="no voting power"):
        proposals.vote(dep, cat, pid, True)
    assert proposals.vote(dep, ann, pid, True).weight == power
    assert proposals.finalize(dep, ben, pid).status == "accepted"


def test_reads(dep):
    shown = datasets.show_dataset(dep, "pics")
    # whichever tests ran before on this worker: the seed plus every accepted proposal
    accepted = [pid for pid in range(1, dep.market.proposal_count() + 1)
                if dep.market.get_proposal(pid).status == "accepted"]
    assert shown.entries == 1 + len(accepted) and shown.rules.quorum_bps == 5000
    entries = datasets.entries_of(dep, shown.dataset_id)
    assert len(entries) == shown.entries
    assert sum(e.item_count for e in entries) == shown.items
    with pytest.raises(NotFoundError):
        datasets.show_dataset(dep, "nope")
    with pytest.raises(NotFoundError):
        proposals.show_proposal(dep, 99)


def test_split_validation_is_stratified_and_deterministic(dep):
    from databright.storage.manifest import Item

    items = [Item(cid=f"bafk{i:03d}", label=str(i % 3), size=1, media_type="image/png",
                  name=f"{i}.png") for i in range(30)] + [
        Item(cid="bafkonly", label="lonely", size=1, media_type="image/png", name="x.png")]
    train, val = datasets.split_validation(items, 0.2)
    assert len(val) == 6 and {it.label for it in val} == {"0", "1", "2"}
    assert "bafkonly" in {it.cid for it in train}  # a one-item label stays in training
    assert (train, val) == datasets.split_validation(list(reversed(items)), 0.2)


def test_evaluation_is_reused_only_for_the_same_parameters(dep, digit_folder):
    from databright.market import evaluation
    from databright.valuation import report as valuation_report

    ben = dep.accounts["ben"]
    pid = proposals.propose(dep, ben, "pics", digit_folder(dep.inputs / "ev", 300, 12)).proposal_id
    first = evaluation.evaluate(dep, pid)
    assert first.cached is False and first.report.params["k"] == 5
    same = evaluation.evaluate(dep, pid)
    assert same.cached is True and same.report_cid == first.report_cid
    assert same.report == first.report
    for changed in ({"k": 3}, {"seed": 1}, {"method": "loo"}, {"alpha": 0.1},
                    {"near_duplicate_threshold": 0.05}):
        other = evaluation.evaluate(dep, pid, **changed)
        assert other.cached is False and other.cache_key != first.cache_key, changed
        assert evaluation.evaluate(dep, pid, **changed).cached is True, changed
    k3 = evaluation.evaluate(dep, pid, k=3)
    assert k3.report.params["k"] == 3
    from databright.valuation.features import ImageFeaturizer

    bigger = evaluation.evaluate(dep, pid, featurizer=ImageFeaturizer(size=4))
    assert bigger.cached is False and "size=4" in bigger.params.featurizer
    # the market's defaults are the valuation layer's own
    assert evaluation.EvaluationParams().alpha == valuation_report.SUSPECT_ALPHA
    assert (evaluation.EvaluationParams().near_duplicate_threshold
            == valuation_report.NEAR_DUPLICATE_THRESHOLD)


def test_evaluation_is_recomputed_when_the_dataset_grew(dep, digit_folder):
    from databright.market import evaluation

    ben = dep.accounts["ben"]
    waiting = proposals.propose(dep, ben, "pics", digit_folder(dep.inputs / "w", 400, 8)).proposal_id
    before = evaluation.evaluate(dep, waiting)
    grow = proposals.propose(dep, ben, "pics", digit_folder(dep.inputs / "g", 500, 8)).proposal_id
    for voter in dep.accounts.values():  # every holder votes yes: the outcome is final at once
        if money.voting_power(dep, grow, voter.address):
            proposals.vote(dep, voter, grow, True)
    assert proposals.finalize(dep, ben, grow).status == "accepted"
    after = evaluation.evaluate(dep, waiting)
    assert after.cached is False and after.cache_key != before.cache_key
    assert after.report.params["n_base"] == before.report.params["n_base"] + 8
