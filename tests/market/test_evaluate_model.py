"""A proposal measured against a model's best checkpoint (paper Figure 3), and the embedding an
evaluation is computed on (the pretrained network by default for images)."""

from __future__ import annotations

import pytest

from databright.errors import IntegrityError, NotFoundError, UsageError
from databright.home import Home
from databright.market import (
    Deployment,
    Rules,
    datasets,
    deployment,
    evaluation,
    models,
    proposals,
)
from databright.market import embedding as emb
from databright.market.model_data import training_records, validation_records
from databright.training import pretrained_available, train_dataset

PASSWORD = "pw"


@pytest.fixture(scope="module")
def world(tmp_path_factory, digit_folder):
    """A home with ann (initiator and evaluator of `pics`), ben (proposer, model developer),
    `pics` and `other` (a second dataset), two open proposals on `pics` (a clean batch and a
    batch whose every label is wrong) and a small CNN trained on `pics` (not registered)."""
    root = tmp_path_factory.mktemp("evalmodel")
    deployment.init_home(Home(root / "home"))
    with Deployment(root / "home") as dep:
        dep.accounts = {}
        for name in ("ann", "ben"):
            deployment.new_account(dep, name, PASSWORD, fast_kdf=True)
            dep.accounts[name] = dep.keystore.unlock(name, PASSWORD)
        ann, ben = dep.accounts["ann"], dep.accounts["ben"]
        rules = Rules(voting_period=3600, evaluator=ann.address)
        datasets.create_dataset(dep, ann, "pics", digit_folder(root / "seed", 0, 80), rules=rules)
        datasets.create_dataset(dep, ann, "other", digit_folder(root / "other", 600, 40),
                                rules=rules)
        dep.clean = proposals.propose(dep, ben, "pics",
                                      digit_folder(root / "clean", 300, 30)).proposal_id
        dep.noisy = proposals.propose(dep, ben, "pics", digit_folder(root / "noisy", 360, 30,
                                                                     flip=1.0)).proposal_id
        dep.trained = train_dataset(training_records(dep, 1), validation_records(dep, 1),
                                    "small-cnn", {"epochs": 15, "size": 16}, store=dep.store)

        def model(dataset: str, sha: str, attest: bool = True) -> int:
            """Register a model of ``dataset`` whose one checkpoint is the trained file, recorded
            with ``sha`` and attested by the evaluator (or self-reported)."""
            trained = dep.trained
            m = models.register_model(dep, ben, dataset, name="cnn",
                                      program_digest=trained.checkpoint.program_digest,
                                      price_per_prediction=10**12)
            signature = (models.attestation_signature(dep, ann, m.model_id, sha, 1,
                                                      trained.accuracy_bps) if attest else b"")
            models.submit_checkpoint(dep, ben, m.model_id, cid=trained.cid, sha256=sha, entries=1,
                                     metric_bps=trained.accuracy_bps, signature=signature)
            return m.model_id

        dep.model = model
        yield dep


def test_fine_tuning_the_best_checkpoint_on_a_batch(world):
    model_id = world.model("pics", world.trained.sha256)
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
    other = world.model("other", world.trained.sha256)
    with pytest.raises(UsageError, match="trained on other"):
        evaluation.evaluate_model(world, world.clean, other)
    unattested = world.model("pics", world.trained.sha256, attest=False)
    with pytest.raises(NotFoundError, match="no attested best checkpoint"):
        evaluation.evaluate_model(world, world.clean, unattested)
    # the chain records another file's hash for these bytes: refused before anything is parsed
    lying = world.model("pics", "ab" * 32)
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
    with pytest.raises(UsageError, match="mix of media types"):
        emb.resolve_featurizer("auto", ["image/png", "application/json"])
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


def test_cli_evaluate_with_model(world):
    from tests.cli.conftest import Cli

    model_id = world.model("pics", world.trained.sha256)
    world.close()  # the CLI opens the home itself (the chain is one process's at a time)
    cli = Cli(world.home.path)
    out = cli("evaluate", str(world.clean), "--model", str(model_id), "--epochs", "5",
              "--featurizer", "pixels")
    assert out["embedding"] == "pixels" == out["evaluation"]["report"]["embedding"]
    m = out["model"]
    assert (m["model_id"], m["family"], m["checkpoint_sha256"], m["epochs"]) == (
        model_id, "small-cnn", world.trained.sha256, 5)
    assert m["before_bps"] == world.trained.accuracy_bps
    assert m["gain_bps"] == m["after_bps"] - m["before_bps"]
    human = " ".join(cli("evaluate", str(world.clean), "--model", str(model_id),
                         json_out=False).stdout.split())
    assert f"embedding: {emb.PRETRAINED}" in human  # the CLI default for images
    assert f"model #{model_id} (small-cnn on pixels" in human and "fine-tuned on 30 items" in human
    assert f"{m['before_bps']} →" in human
    refused = cli("evaluate", str(world.clean), "--model", "99", code=3, json_out=False)
    assert "no model #99" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
