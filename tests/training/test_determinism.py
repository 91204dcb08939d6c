"""Determinism by construction: same config and data → byte-identical checkpoints across
processes; another seed, config, family or program → another checkpoint or digest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from databright.training import MlpConfig, canonical_order, get_family
from databright.training import digest as digest_module
from tests.training.conftest import digit_rows

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """
import json, sys
from databright.training import get_family, sha256_hex
from tests.training.conftest import digit_images, digit_rows
seed = int(sys.argv[1])
rows, images = digit_rows(0, 200)[::-1], digit_images(0, 80)  # input order must not matter
out = {}
for family, train, val, cfg in (
    ("mlp", rows, digit_rows(1200, 50), {"epochs": 3, "seed": seed, "hidden": 16}),
    ("small-cnn", images, digit_images(100, 20), {"epochs": 2, "seed": seed, "threads": 2}),
):
    out[family] = sha256_hex(get_family(family).fit(train, val, cfg).checkpoint.to_bytes())
print(json.dumps(out))
"""


def _train_in_subprocesses(*seeds: int) -> list[dict[str, str]]:
    """Train in one fresh process per seed (run side by side), return each one's sha256s."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    procs = [subprocess.Popen([sys.executable, "-c", _SCRIPT, str(seed)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in seeds]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def test_same_config_gives_byte_identical_checkpoints_across_processes():
    first, second = _train_in_subprocesses(0, 0)
    assert first == second
    # ...and the in-process run (other input order, other RNG history) agrees as well
    rows = digit_rows(0, 200)
    here = get_family("mlp").fit(rows, digit_rows(1200, 50), {"epochs": 3, "seed": 0, "hidden": 16})
    from databright.training import sha256_hex

    assert sha256_hex(here.checkpoint.to_bytes()) == first["mlp"]


def test_another_seed_changes_the_checkpoint():
    rows, val = digit_rows(0, 200), digit_rows(1200, 50)
    mlp = get_family("mlp")
    a = mlp.fit(rows, val, MlpConfig(epochs=3, seed=0, hidden=16)).checkpoint.to_bytes()
    b = mlp.fit(rows, val, MlpConfig(epochs=3, seed=1, hidden=16)).checkpoint.to_bytes()
    assert a != b


def test_training_leaves_the_callers_torch_state_alone():
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    get_family("logreg").fit(digit_rows(0, 60), digit_rows(1200, 20), {"epochs": 1, "threads": 1})
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def test_canonical_order_depends_on_content_and_seed_only():
    rows = digit_rows(0, 50)
    a = [r.cid for r in canonical_order(rows, 0)]
    assert a == [r.cid for r in canonical_order(rows[::-1], 0)]
    assert a != [r.cid for r in canonical_order(rows, 1)]
    assert sorted(a) == sorted(r.cid for r in rows)


def test_program_digest_names_family_config_and_code():
    mlp, logreg = get_family("mlp"), get_family("logreg")
    base = mlp.digest(MlpConfig())
    assert base == mlp.digest(MlpConfig()) and len(base) == 64
    assert mlp.digest(MlpConfig(hidden=65)) != base
    assert mlp.digest(MlpConfig(seed=1)) != base
    assert logreg.digest(logreg.config()) != base
    code = digest_module.code_texts()
    names = [name for name, _ in code]
    assert "families/base.py" in names and "checkpoint.py" in names
    assert digest_module.program_digest("mlp", MlpConfig(), code=code) == base
    edited = [(n, d + b"\n# edited\n" if n == "families/base.py" else d) for n, d in code]
    assert digest_module.program_digest("mlp", MlpConfig(), code=edited) != base
