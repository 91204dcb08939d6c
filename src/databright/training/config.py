"""Typed training configurations: one frozen dataclass per family, plain JSON in a checkpoint.

``ARCH`` names the fields that shape the network (or its inputs): a fine-tune must keep them,
so a checkpoint's tensors always fit the configuration stored beside them.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numpy as np

from databright.errors import UsageError

__all__ = [
    "EfficientNetHeadConfig",
    "LogRegConfig",
    "MlpConfig",
    "SmallCnnConfig",
    "TrainConfig",
    "canonical_json",
    "json_depth",
    "loads_untrusted",
]

MAX_JSON_DEPTH = 32
_ESCAPED = re.compile(rb"\\.", re.DOTALL)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text (brackets inside strings do not
    count), found without parsing: vectorised, so a megabyte costs milliseconds."""
    raw = np.frombuffer(_ESCAPED.sub(b"", data), dtype=np.uint8)
    inside = (np.cumsum(raw == ord('"')) % 2).astype(bool)
    opening = ((raw == ord("[")) | (raw == ord("{"))) & ~inside
    closing = ((raw == ord("]")) | (raw == ord("}"))) & ~inside
    depth = np.cumsum(opening.astype(np.int64) - closing.astype(np.int64))
    return int(depth.max()) if depth.size else 0


def loads_untrusted(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` of untrusted bytes, refusing NaN/Infinity and nesting deeper than
    ``max_depth`` before parsing (the C parser recurses once a level: very deep input can
    exhaust the stack of a process with a raised recursion limit).

    Raises:
        ValueError: not UTF-8 JSON, a non-finite constant, or too deep.
    """
    if json_depth(data) > max_depth:
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return json.loads(data.decode("utf-8"), parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@dataclass(frozen=True)
class TrainConfig:
    """What every family shares.

    Attributes:
        seed: seeds the data order, the weight initialisation and every shuffle.
        epochs: passes over the training items.
        batch_size: items per optimiser step.
        lr: Adam learning rate.
        weight_decay: L2 penalty (AdamW decoupled decay).
        threads: torch intra-op threads; part of the determinism class (other counts give
            other bits).
    """

    seed: int = 0
    epochs: int = 30
    batch_size: int = 32
    lr: float = 0.01
    weight_decay: float = 0.0
    threads: int = 1

    ARCH: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise UsageError(f"seed must be a non-negative integer, not {self.seed!r}")
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise UsageError(f"{name} must be a number, not {value!r}")
        if not 0 < self.lr < 10 or not 0 <= self.weight_decay < 10:
            raise UsageError("lr must be in (0, 10) and weight_decay in [0, 10)")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """A config from JSON fields; unknown fields are refused (a typo must not train)."""
        if not isinstance(data, dict):
            raise UsageError(f"a {cls.__name__} is a JSON object, not {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"bad {cls.__name__}: {exc}") from exc

    def arch(self) -> dict[str, Any]:
        """The fields a fine-tune must keep."""
        return {k: getattr(self, k) for k in self.ARCH}


@dataclass(frozen=True)
class EfficientNetHeadConfig(TrainConfig):
    """A linear head on frozen EfficientNet-Lite0 embeddings (1280-d)."""

    epochs: int = 60
    batch_size: int = 64
    lr: float = 0.003
    weight_decay: float = 0.0001


@dataclass(frozen=True)
class SmallCnnConfig(TrainConfig):
    """A two-block CNN trained from scratch on ``size × size`` images.

    Attributes:
        size: side the images are resized to.
        mode: ``"L"`` (grayscale) or ``"RGB"``.
        width: channels of the first block (the second has twice as many).
    """

    epochs: int = 20
    lr: float = 0.01
    size: int = 28
    mode: Literal["L", "RGB"] = "L"
    width: int = 8

    ARCH: ClassVar[tuple[str, ...]] = ("size", "mode", "width")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.size, int) or not 8 <= self.size <= 128 or self.size % 4:
            raise UsageError(f"size must be a multiple of 4 in [8, 128], not {self.size!r}")
        if self.mode not in ("L", "RGB"):
            raise UsageError(f"mode must be 'L' or 'RGB', not {self.mode!r}")
        if not isinstance(self.width, int) or not 1 <= self.width <= 256:
            raise UsageError(f"width must be an integer in [1, 256], not {self.width!r}")


@dataclass(frozen=True)
class LogRegConfig(TrainConfig):
    """Multinomial logistic regression on standardised numeric columns."""

    epochs: int = 100
    lr: float = 0.05
    weight_decay: float = 0.001


@dataclass(frozen=True)
class MlpConfig(TrainConfig):
    """One hidden ReLU layer on standardised numeric columns.

    Attributes:
        hidden: units of the hidden layer.
    """

    epochs: int = 60
    lr: float = 0.01
    weight_decay: float = 0.0001
    hidden: int = 64

    ARCH: ClassVar[tuple[str, ...]] = ("hidden",)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.hidden, int) or not 1 <= self.hidden <= 4096:
            raise UsageError(f"hidden must be an integer in [1, 4096], not {self.hidden!r}")
