"""Training: model families, deterministic training, safetensors checkpoints in the store.

The only package besides ``compute`` that imports torch. Families (``efficientnet-head``,
``small-cnn``, ``logreg``, ``mlp``) share one loop (:mod:`.families.base`); checkpoints are
safetensors files verified by sha256 before they are parsed (:mod:`.checkpoint`). See
``docs/training.md``.
"""

from __future__ import annotations

from databright.training.api import FineTuneGain, fine_tune_gain, train_dataset
from databright.training.checkpoint import (
    Checkpoint,
    StoredCheckpoint,
    checkpoint_from_bytes,
    load_checkpoint,
    save_checkpoint,
    sha256_hex,
)
from databright.training.config import (
    EfficientNetHeadConfig,
    LogRegConfig,
    MlpConfig,
    SmallCnnConfig,
    TrainConfig,
)
from databright.training.embed import (
    Embedder,
    EmbeddingCache,
    home_cache_dir,
    pretrained_available,
)
from databright.training.errors import (
    CheckpointIntegrityError,
    MalformedCheckpointError,
    TrainingError,
)
from databright.training.families import (
    FAMILIES,
    Evaluation,
    Family,
    Progress,
    TrainResult,
    get_family,
)
from databright.training.records import Record, canonical_order, records_from

__all__ = [
    "FAMILIES",
    "Checkpoint",
    "CheckpointIntegrityError",
    "EfficientNetHeadConfig",
    "Embedder",
    "EmbeddingCache",
    "Evaluation",
    "Family",
    "FineTuneGain",
    "LogRegConfig",
    "MalformedCheckpointError",
    "MlpConfig",
    "Progress",
    "Record",
    "SmallCnnConfig",
    "StoredCheckpoint",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "canonical_order",
    "checkpoint_from_bytes",
    "fine_tune_gain",
    "get_family",
    "home_cache_dir",
    "load_checkpoint",
    "pretrained_available",
    "records_from",
    "save_checkpoint",
    "sha256_hex",
    "train_dataset",
]
