"""Errors of the compute layer, under the one root :class:`~databright.errors.DataBrightError`."""

from __future__ import annotations

from databright.errors import DataBrightError

__all__ = ["DeterminismClassError", "ResultError", "TaskError"]


class TaskError(DataBrightError):
    """A task spec is malformed, or cannot run here (unknown program, bad weights, ...)."""

    exit_code = 2
    http_status = 422


class DeterminismClassError(TaskError):
    """The task names another determinism class than this machine's: its bits would differ."""


class ResultError(TaskError):
    """A worker's result is not a gradient of its task (names, shapes, dtypes, non-finite)."""
