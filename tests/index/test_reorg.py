"""A real reorganisation on anvil: blocks the index synced are replaced by others; the next sync
notices the changed hash and the index follows the new chain."""

from __future__ import annotations

from sqlalchemy import select

from databright.index.cache import ProposalRow, VoteRow
from databright.market import Deployment, proposals
from databright.market import sync as index_sync
from tests.chain.conftest import anvil_url  # noqa: F401 - the session-wide anvil fixture
from tests.cli.test_anvil import remote  # noqa: F401 - a home on anvil with alice and bob


def test_a_reorg_on_anvil_is_followed(remote, digit_folder, tmp_path):  # noqa: F811
    seed = digit_folder(tmp_path / "seed", 0, 40)
    remote("dataset", "create", "digits", "--from", str(seed), "--period", "1h", as_="alice")
    with Deployment(remote.home) as dep:
        alice = dep.keystore.unlock("alice", "test-password")
        bob = dep.keystore.unlock("bob", "test-password")
        index_sync.sync(dep)
        fork_point = dep.chain._rpc("evm_snapshot", [])
        lost = proposals.propose(dep, bob, "digits", digit_folder(tmp_path / "a", 50, 5))
        proposals.vote(dep, alice, lost.proposal_id, True)
        synced = index_sync.sync(dep)
        assert synced.events >= 2 and not synced.rebuilt
        with dep.index.session() as s:
            assert s.get(ProposalRow, lost.proposal_id).manifest_cid == lost.manifest_cid
        old_head = dep.chain.block_number()

        # the three blocks (commit, reveal, vote) are replaced by a longer fork: the same batch proposed by alice (the
        # contract wrapper directly: `proposals.propose` would sync first), and no vote
        assert dep.chain._rpc("evm_revert", [fork_point]) is True
        kept, _ = dep.market.propose(alice, 1, lost.manifest_cid, lost.merkle_root,
                                     lost.items)
        while dep.chain.block_number() < old_head + 1:
            dep.chain._rpc("evm_mine", [])
        assert kept == lost.proposal_id

        result = index_sync.sync(dep)
        assert result.rebuilt and result.from_block == 0 and result.reorg_depth == 3
        with dep.index.session() as s:
            row = s.get(ProposalRow, kept)
            assert (row.proposer, row.yes, row.status) == (alice.address, 0, "open")
            assert s.execute(select(VoteRow)).all() == []
        assert index_sync.sync(dep).ranges == 0
