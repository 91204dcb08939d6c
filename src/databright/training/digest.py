"""Program digests: which program produced a checkpoint.

``sha256("databright-training-program 1" ‖ family ‖ canonical config JSON ‖ each training code
file's relative path and bytes ‖ extra inputs)``. Another family, configuration, version of the
training code or pretrained weight file gives another digest, so a registry can tell programs
apart and a verifier can re-run exactly the one that was claimed.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from databright.training.config import TrainConfig, canonical_json

__all__ = ["code_files", "code_texts", "file_sha256", "program_digest"]

_PACKAGE = Path(__file__).resolve().parent
_TAG = b"databright-training-program 1"


def code_files() -> list[Path]:
    """The training package's Python files, in a fixed order."""
    return sorted(_PACKAGE.rglob("*.py"), key=lambda p: p.relative_to(_PACKAGE).as_posix())


def code_texts() -> list[tuple[str, bytes]]:
    """``(relative path, bytes)`` of each training code file, in :func:`code_files` order."""
    return [(p.relative_to(_PACKAGE).as_posix(), p.read_bytes()) for p in code_files()]


@functools.cache
def file_sha256(path: str) -> str:
    """sha256 of a file (cached: pretrained weights are hashed once a process)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def program_digest(
    family: str,
    config: TrainConfig,
    inputs: Iterable[str] = (),
    code: Sequence[tuple[str, bytes]] | None = None,
) -> str:
    """Hex sha256 naming the program: family, config, training code (default: the installed
    package's, :func:`code_texts`) and ``inputs`` (e.g. the sha256 of pretrained weights)."""
    h = hashlib.sha256(_TAG)
    for part in (family, canonical_json(config.to_dict())):
        h.update(b"\0" + part.encode("utf-8"))
    for name, data in code_texts() if code is None else code:
        h.update(b"\0" + name.encode("utf-8"))
        h.update(len(data).to_bytes(8, "big") + data)
    for extra in inputs:
        h.update(b"\0" + extra.encode("utf-8"))
    return h.hexdigest()
