"""A proposal measured against a model's best checkpoint (paper Figure 3), and the embedding an
evaluation is computed on (the pretrained network by default for images)."""

from __future__ import annotations

from pathlib import Path

import pytest

from databright.errors import IntegrityError, NotFoundError, UsageError
from databright.home import Home
from databright.market import Deployment, Rules, datasets, deployment, evaluation, proposals
from databright.market import embedding as emb
from databright.storage.manifest import read_manifest
from databright.training import pretrained_available, records_from, train_dataset

PASSWORD = "pw"
FEE = 10**15
MOCK_TERMS = Path(__file__).resolve().parents[1] / "contracts" / "MockDataTerms.vy"


def _registry(dep, evaluator: str, share_token: str):
    """A ModelRegistry on the home's chain whose dataset #1 has this evaluator and token, and a
    dataset #2 with another evaluator (terms from the contracts' test stand-in)."""
    from databright.chain.compile import compile_contract, compile_file
    from databright.chain.deploy import deploy_contract
    from databright.chain.model_registry import ModelRegistry

    owner = dep.accounts["ann"]
    terms_code = compile_file(MOCK_TERMS)
    terms_address = deploy_contract(dep.chain, terms_code, owner)
    terms = dep.chain.w3.eth.contract(address=terms_address, abi=terms_code.abi)
    for ds_id, who in ((1, evaluator), (2, dep.accounts["ben"].address)):
        dep.chain.send(terms.functions.set_terms(ds_id, share_token, who, FEE, 0, 1), owner)
    address = deploy_contract(dep.chain, compile_contract("ModelRegistry"), owner,
                              terms_address, 60)
    return ModelRegistry(dep.chain, address)


@pytest.fixture(scope="module")
def world(tmp_path_factory, digit_folder):
    root = tmp_path_factory.mktemp("evalmodel")
    deployment.init_home(Home(root / "home"))
    with Deployment(root / "home") as dep:
        dep.accounts = {}
        for name in ("ann", "ben"):
            deployment.new_account(dep, name, PASSWORD, fast_kdf=True)
            dep.accounts[name] = dep.keystore.unlock(name, PASSWORD)
        ann, ben = dep.accounts["ann"], dep.accounts["ben"]
        ds = datasets.create_dataset(dep, ann, "pics", digit_folder(root / "seed", 0, 80),
                                     rules=Rules(voting_period=3600, evaluator=ann.address))
        dep.clean = proposals.propose(dep, ben, "pics",
                                      digit_folder(root / "clean", 300, 30)).proposal_id
        dep.noisy = proposals.propose(dep, ben, "pics", digit_folder(root / "noisy", 360, 30,
                                                                     flip=1.0)).proposal_id
        # the dataset's first checkpoint: a small CNN on the accepted entries
        card = datasets.card_of(dep, ds.dataset_id)
        train = [it for e in datasets.entries_of(dep, ds.dataset_id)
                 for it in read_manifest(dep.store, e.manifest_cid)]
        val = read_manifest(dep.store, card["validation_manifest"])
        dep.trained = train_dataset(records_from(train, dep.store.get),
                                    records_from(val, dep.store.get), "small-cnn",
                                    {"epochs": 15, "size": 16}, store=dep.store)
        registry = _registry(dep, ann.address, ds.share_token)
        dep.__dict__["registry"] = registry  # what Deployment.registry opens from the home

        def model(dataset_id: int, sha: str, attest: bool = True, metric: int = 0) -> int:
            from databright.chain.model_registry import sign

            model_id, _ = registry.register(ben, dataset_id, "cnn", b"\x01" * 32, 10**12, 3000,
                                            value=FEE)
            metric = metric or dep.trained.accuracy_bps
            attestation = registry.attestation(model_id, sha, 1, metric)
            signature = sign(attestation, ann) if attest else b""
            registry.submit_checkpoint(ben, model_id, dep.trained.cid, sha, 1, metric,
                                       signature, value=FEE)
            return model_id

        dep.model = model
        yield dep


def test_fine_tuning_the_best_checkpoint_on_a_batch(world):
    model_id = world.model(1, world.trained.sha256)
    clean = evaluation.evaluate_model(world, world.clean, model_id)
    assert (clean.model_id, clean.family, clean.embedding) == (model_id, "small-cnn", "pixels")
    assert (clean.checkpoint_cid, clean.checkpoint_sha256) == (world.trained.cid,
                                                                world.trained.sha256)
    # "before" is the stored checkpoint on the validation split: the metric it was trained to
    assert clean.before_bps == world.trained.accuracy_bps and clean.validation_items == 16
    assert clean.gain_bps == clean.after_bps - clean.before_bps
    assert clean.batch_items == 30 and clean.skipped == 0
    assert clean.epochs == 15  # the checkpoint's own config
    noisy = evaluation.evaluate_model(world, world.noisy, model_id, epochs=15)
    assert noisy.before_bps == clean.before_bps
    # every label of that batch is wrong: the model must get worse, and worse than with the truth
    assert noisy.gain_bps < 0 and noisy.gain_bps < clean.gain_bps
    # the same checkpoint passed in directly gives the same figures
    direct = evaluation.evaluate_model(world, world.clean, world.trained.checkpoint)
    assert direct.model_id is None and direct.checkpoint_cid is None
    assert direct.checkpoint_sha256 == world.trained.sha256
    assert (direct.before_bps, direct.after_bps) == (clean.before_bps, clean.after_bps)


def test_refusals(world):
    with pytest.raises(NotFoundError, match="no model #99"):
        evaluation.evaluate_model(world, world.clean, 99)
    other = world.model(2, world.trained.sha256, attest=False)
    with pytest.raises(UsageError, match="dataset #2"):
        evaluation.evaluate_model(world, world.clean, other)
    unattested = world.model(1, world.trained.sha256, attest=False)
    with pytest.raises(NotFoundError, match="no attested best checkpoint"):
        evaluation.evaluate_model(world, world.clean, unattested)
    # the chain records another file's hash for these bytes: refused before anything is parsed
    lying = world.model(1, "ab" * 32)
    with pytest.raises(IntegrityError, match="sha256"):
        evaluation.evaluate_model(world, world.clean, lying)


def test_auto_featurizer_is_the_pretrained_network_for_images(monkeypatch):
    assert emb.resolve_featurizer("auto", ["application/json"]) == "tabular"
    assert emb.resolve_featurizer("pixels", ["image/png"]) == "pixels"
    with pytest.raises(UsageError, match="does not apply"):
        emb.resolve_featurizer("tabular", ["image/png"])
    with pytest.raises(UsageError, match="does not apply"):
        emb.resolve_featurizer("pixels", ["application/json"])
    with pytest.raises(UsageError, match="unknown featurizer"):
        emb.resolve_featurizer("clip", ["image/png"])
    assert pretrained_available()  # the test environment has the network installed
    assert emb.resolve_featurizer("auto", ["image/png", "image/jpeg"]) == emb.PRETRAINED
    monkeypatch.setattr(emb, "pretrained_installed", lambda: False)
    assert emb.resolve_featurizer("auto", ["image/png"]) == "pixels"
    with pytest.raises(UsageError, match="not installed"):
        emb.resolve_featurizer(emb.PRETRAINED, ["image/png"])


def test_reports_state_their_embedding_and_are_stored_per_embedding(world):
    pretrained = evaluation.evaluate(world, world.clean)
    again = evaluation.evaluate(world, world.clean)
    assert again.cached is True and again.report_cid == pretrained.report_cid
    assert again.embedding == emb.PRETRAINED
    assert pretrained.embedding == emb.PRETRAINED == pretrained.report.embedding
    assert "PrecomputedFeaturizer" in pretrained.params.featurizer
    assert "weights sha256" in pretrained.params.featurizer
    pixels = evaluation.evaluate(world, world.clean, featurizer="pixels")
    assert pixels.embedding == "pixels" and pixels.cached is False
    assert pixels.cache_key != pretrained.cache_key
    assert pixels.params.featurizer == "ImageFeaturizer(mode='L', size=8)"
    # the stored report (what voters read) names the embedding too
    import json

    stored = json.loads(world.store.get(pretrained.report_cid))
    assert stored["embedding"] == emb.PRETRAINED
    # a batch whose every label is wrong: the pretrained KNN utility drops, most items are suspects
    noisy = evaluation.evaluate(world, world.noisy)
    assert noisy.report.utility_gain < 0 < pretrained.report.utility_gain
    assert len(noisy.report.suspects) > len(pretrained.report.suspects)
