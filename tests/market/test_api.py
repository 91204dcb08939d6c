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
    pid = proposals.propose(dep, ben, "pics", digit_folder(dep.inputs / "b1", 100, 10))["proposal"]
    power = money.voting_power(dep, pid, ann.address)
    assert power == money.holdings(dep, ann.address)[0].balance > 0
    # shares moved after the snapshot add no weight to the receiver and keep the sender's
    money.transfer(dep, ann, "pics", cat.address, power // 2)
    assert money.voting_power(dep, pid, cat.address) == 0
    with pytest.raises(ContractRevert, match="no voting power"):
        proposals.vote(dep, cat, pid, True)
    assert proposals.vote(dep, ann, pid, True)["weight"] == power
    assert proposals.finalize(dep, ben, pid)["status"] == "accepted"


def test_reads(dep):
    shown = datasets.show_dataset(dep, "pics")
    assert shown["entries"] == 2 and shown["rules"]["quorum_bps"] == 5000
    entries = datasets.entries_of(dep, shown["id"])
    assert sum(e.item_count for e in entries) == shown["items"]
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
