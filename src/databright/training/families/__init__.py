"""The registry of model families, by name."""

from __future__ import annotations

from databright.errors import UsageError
from databright.training.families.base import Evaluation, Family, Progress, TrainResult
from databright.training.families.efficientnet_head import EfficientNetHead
from databright.training.families.small_cnn import SmallCnn
from databright.training.families.tabular import LogReg, Mlp

__all__ = ["FAMILIES", "Evaluation", "Family", "Progress", "TrainResult", "get_family"]

FAMILIES: dict[str, Family] = {f.name: f for f in (EfficientNetHead(), SmallCnn(), LogReg(), Mlp())}


def get_family(name: str) -> Family:
    """The family registered as ``name``. Raises UsageError for an unknown one."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise UsageError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None
