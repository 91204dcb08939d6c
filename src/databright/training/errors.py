"""Errors of the training layer, under the one root :class:`~databright.errors.DataBrightError`."""

from __future__ import annotations

from databright.errors import IntegrityError, UsageError

__all__ = ["CheckpointIntegrityError", "MalformedCheckpointError", "TrainingError"]


class TrainingError(UsageError):
    """Training cannot run on this input (no items, one class, an unreadable item, ...)."""


class CheckpointIntegrityError(IntegrityError):
    """A checkpoint's bytes do not hash to the sha256 the caller expects (tampered or wrong)."""


class MalformedCheckpointError(IntegrityError):
    """A checkpoint is not a valid safetensors file of a known family, or its tensors do not fit
    the family's network (names, shapes, dtypes)."""
