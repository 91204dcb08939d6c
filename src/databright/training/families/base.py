"""What every model family shares: the training loop, prediction, evaluation, validation.

A family supplies four small pieces: how its inputs are learnt from the training records
(``fit_inputs``: e.g. a table's columns and their standardisation), how records become input
tensors (``inputs``), its network (``network``) and the extra inputs of its program digest.
Everything else — data order, seeding, the loop, metrics, checkpoints, fine-tuning — is here,
once.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from databright.errors import UsageError
from databright.training.checkpoint import Checkpoint
from databright.training.config import TrainConfig
from databright.training.determinism import DTYPE, determinism_class, deterministic
from databright.training.digest import program_digest
from databright.training.embed import EmbeddingCache
from databright.training.errors import MalformedCheckpointError, TrainingError
from databright.training.records import Record, canonical_order, label_list

__all__ = [
    "Context",
    "Evaluation",
    "Family",
    "Progress",
    "TrainResult",
    "check_split",
    "context",
    "epoch_perms",
    "evaluate_network",
    "init_prep",
    "network_tensors",
    "optimizer",
]

#: ``progress(stage, done, total)``: stage is "embed" (images embedded) or "epoch".
Progress = Callable[[str, int, int], None]
Prep = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Evaluation:
    """Accuracy on labelled items: ``accuracy_bps`` = ⌊10000 · correct / total⌋."""

    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def accuracy_bps(self) -> int:
        return self.correct * 10_000 // self.total if self.total else 0


@dataclass(frozen=True)
class TrainResult:
    """A finished training run. ``cid``/``sha256`` are set once the checkpoint is stored."""

    checkpoint: Checkpoint
    evaluation: Evaluation
    epochs: int
    seconds: float
    history: tuple[int, ...] = ()  # validation accuracy (bps) after each epoch
    cid: str | None = None
    sha256: str | None = None

    @property
    def accuracy(self) -> float:
        return self.evaluation.accuracy

    @property
    def accuracy_bps(self) -> int:
        return self.evaluation.accuracy_bps

    def to_dict(self) -> dict[str, Any]:
        """JSON for ``--json`` output."""
        c = self.checkpoint
        return {
            "family": c.family, "config": c.config, "labels": list(c.labels),
            "program_digest": c.program_digest, "snapshot": c.snapshot,
            "accuracy_bps": self.accuracy_bps, "accuracy": self.accuracy,
            "validation_items": self.evaluation.total, "epochs": self.epochs,
            "seconds": round(self.seconds, 3), "history_bps": list(self.history),
            "checkpoint": {"cid": self.cid, "sha256": self.sha256},
        }


@dataclass
class Context:
    """Per-call resources: the embedding cache and the progress callback."""

    cache: EmbeddingCache
    progress: Progress | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_DEFAULT_CACHE = EmbeddingCache()  # one per process: an image is embedded once a process


def context(cache: EmbeddingCache | None = None, progress: Progress | None = None) -> Context:
    """A fit's resources: ``cache`` (default: the process-wide memory cache) and ``progress``."""
    return Context(cache if cache is not None else _DEFAULT_CACHE, progress)


class Family(ABC):
    """A model family; see the module docstring for what a subclass supplies."""

    name: ClassVar[str]
    config_type: ClassVar[type[TrainConfig]]
    media: ClassVar[str]  # "image" or "table"

    # -- what a family supplies -------------------------------------------------------------

    @abstractmethod
    def fit_inputs(
        self, cfg: TrainConfig, records: Sequence[Record], ctx: Context
    ) -> tuple[torch.Tensor, Prep, dict[str, Any]]:
        """Inputs of the training records, plus the learnt preprocessing tensors and extra JSON."""

    @abstractmethod
    def inputs(
        self, cfg: TrainConfig, records: Sequence[Record], prep: Prep, extra: dict[str, Any],
        ctx: Context,
    ) -> torch.Tensor:
        """Inputs of any records under learnt preprocessing."""

    @abstractmethod
    def network(self, cfg: TrainConfig, extra: dict[str, Any], classes: int) -> nn.Module:
        """A freshly initialised network (under the caller's seeded RNG)."""

    def prep_shapes(self, cfg: TrainConfig, extra: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        """Expected shapes of the ``prep.*`` tensors (none by default)."""
        return {}

    def check_extra(self, cfg: TrainConfig, extra: dict[str, Any]) -> None:
        """Raise MalformedCheckpointError when a checkpoint's extra JSON is not this family's."""

    def digest_inputs(self) -> list[str]:
        """Extra inputs of the program digest (e.g. pretrained weights' sha256)."""
        return []

    # -- shared machinery -------------------------------------------------------------------

    def config(self, cfg: TrainConfig | Mapping[str, Any] | None = None) -> TrainConfig:
        """``cfg`` as this family's config type (defaults when None)."""
        if cfg is None:
            return self.config_type()
        if isinstance(cfg, Mapping):
            return self.config_type.from_dict(dict(cfg))
        if type(cfg) is not self.config_type:
            raise UsageError(f"{self.name} takes a {self.config_type.__name__}, not "
                             f"{type(cfg).__name__}")
        return cfg

    def digest(self, cfg: TrainConfig) -> str:
        """The program digest of training this family with ``cfg``."""
        return program_digest(self.name, cfg, self.digest_inputs())

    def fit(
        self,
        train: Sequence[Record],
        val: Sequence[Record],
        cfg: TrainConfig | Mapping[str, Any] | None = None,
        *,
        init: Checkpoint | None = None,
        snapshot: int | None = None,
        progress: Progress | None = None,
        cache: EmbeddingCache | None = None,
    ) -> TrainResult:
        """Train on ``train`` and measure accuracy on ``val``.

        Args:
            train: training records (the dataset's accepted entries).
            val: validation records (never trained on).
            cfg: the family's config (or its JSON fields); with ``init``, JSON fields override
                the checkpoint's config and None keeps it.
            init: fine-tune this checkpoint (same family, labels and architecture fields).
            snapshot: dataset entry count recorded in the checkpoint (default ``len(train)``).
            progress: called as ``progress(stage, done, total)``.
            cache: embedding cache (default: one in memory per process).
        """
        cfg = self.resolve_config(cfg, init)
        check_split(train, val)
        ctx = context(cache, progress)
        start = time.perf_counter()
        with deterministic(cfg.seed, cfg.threads):
            ordered, labels = self.order_and_labels(train, cfg, init)
            index = {label: i for i, label in enumerate(labels)}
            if init is not None:
                prep, extra = init_prep(init)
                x = self.inputs(cfg, ordered, prep, extra, ctx)
            else:
                x, prep, extra = self.fit_inputs(cfg, ordered, ctx)
            y = torch.tensor([index[r.label] for r in ordered], dtype=torch.int64)
            xv = self.inputs(cfg, val, prep, extra, ctx)
            yv = torch.tensor([index.get(r.label, -1) for r in val], dtype=torch.int64)
            net = self.initial_network(cfg, extra, labels, init)
            history = self._loop(net, cfg, x, y, xv, yv, progress)
            evaluation = evaluate_network(net, xv, yv)
            tensors = network_tensors(net, prep)
        extra = {**extra, "determinism": determinism_class(cfg.threads)}
        ckpt = Checkpoint(
            family=self.name, config=cfg.to_dict(), labels=labels,
            program_digest=self.digest(cfg),
            snapshot=len(train) if snapshot is None else int(snapshot),
            metric_bps=evaluation.accuracy_bps, extra=extra, tensors=tensors,
        )
        return TrainResult(ckpt, evaluation, cfg.epochs, time.perf_counter() - start,
                           tuple(history))

    # -- the pieces of fit, shared with data-parallel training (databright.compute) ----------

    def resolve_config(
        self, cfg: TrainConfig | Mapping[str, Any] | None, init: Checkpoint | None
    ) -> TrainConfig:
        """The config a fit runs with: ``cfg``, or with ``init`` the checkpoint's config with
        ``cfg``'s JSON fields over it (the architecture kept)."""
        if init is not None:
            self.validate(init)
            base = self.config_type.from_dict(init.config)
            if isinstance(cfg, Mapping):  # fields given override the checkpoint's own
                cfg = self.config_type.from_dict({**base.to_dict(), **cfg})
            cfg = base if cfg is None else self.config(cfg)
            if cfg.arch() != base.arch():
                raise UsageError(f"a fine-tune keeps the architecture {base.arch()}, "
                                 f"not {cfg.arch()}")
        return self.config(cfg)

    def order_and_labels(
        self, train: Sequence[Record], cfg: TrainConfig, init: Checkpoint | None
    ) -> tuple[list[Record], tuple[str, ...]]:
        """The training records in canonical order and the class labels (the checkpoint's
        when fine-tuning; refuses training labels it does not know)."""
        ordered = canonical_order(train, cfg.seed)
        labels = init.labels if init is not None else label_list(ordered)
        unknown = sorted({r.label for r in ordered} - set(labels))
        if unknown:
            raise TrainingError(f"labels {unknown} are not among the checkpoint's {list(labels)}")
        return ordered, labels

    def fit_prep(
        self, cfg: TrainConfig, records: Sequence[Record], ctx: Context
    ) -> tuple[Prep, dict[str, Any]]:
        """The preprocessing tensors and extra JSON ``fit_inputs`` learns, without the inputs
        when the family can (a data-parallel coordinator needs only these)."""
        _, prep, extra = self.fit_inputs(cfg, records, ctx)
        return prep, extra

    def initial_network(
        self, cfg: TrainConfig, extra: dict[str, Any], labels: Sequence[str],
        init: Checkpoint | None,
    ) -> nn.Module:
        """The network a fit starts from: fresh under the current (seeded) RNG, then with
        ``init``'s weights when fine-tuning."""
        net = self.network(cfg, extra, len(labels))
        if init is not None:
            net.load_state_dict({k[4:]: v for k, v in init.tensors.items()
                                 if k.startswith("net.")})
        return net

    def _loop(
        self, net: nn.Module, cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor,
        xv: torch.Tensor, yv: torch.Tensor, progress: Progress | None,
    ) -> list[int]:
        opt = optimizer(net, cfg)
        loss_fn = nn.CrossEntropyLoss()
        history: list[int] = []
        for epoch, perm in enumerate(epoch_perms(x.shape[0], cfg)):
            net.train()
            for s in range(0, x.shape[0], cfg.batch_size):
                idx = perm[s : s + cfg.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(net(x[idx]), y[idx])
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
            history.append(evaluate_network(net, xv, yv).accuracy_bps)
            if progress is not None:
                progress("epoch", epoch + 1, cfg.epochs)
        return history

    def _restore(self, checkpoint: Checkpoint) -> tuple[TrainConfig, nn.Module]:
        self.validate(checkpoint)
        cfg = self.config_type.from_dict(checkpoint.config)
        with deterministic(cfg.seed, cfg.threads):
            net = self.network(cfg, checkpoint.extra, len(checkpoint.labels))
        net.load_state_dict({k[4:]: v for k, v in checkpoint.tensors.items()
                             if k.startswith("net.")})
        return cfg, net.eval()

    def _inputs_of(
        self, checkpoint: Checkpoint, cfg: TrainConfig, items: Sequence[Record],
        cache: EmbeddingCache | None,
    ) -> torch.Tensor:
        prep = {k[5:]: v for k, v in checkpoint.tensors.items() if k.startswith("prep.")}
        ctx = Context(cache if cache is not None else _DEFAULT_CACHE)
        with deterministic(cfg.seed, cfg.threads):
            return self.inputs(cfg, items, prep, checkpoint.extra, ctx)

    def predict(
        self, checkpoint: Checkpoint, items: Sequence[Record], *, cache: EmbeddingCache | None = None
    ) -> list[str]:
        """The predicted label of each item (records' own labels are ignored)."""
        if not items:
            return []
        cfg, net = self._restore(checkpoint)
        x = self._inputs_of(checkpoint, cfg, items, cache)
        with deterministic(cfg.seed, cfg.threads), torch.inference_mode():
            pred = net(x).argmax(dim=1)
        return [checkpoint.labels[int(i)] for i in pred]

    def restore(self, checkpoint: Checkpoint) -> tuple[TrainConfig, nn.Module]:
        """The checkpoint's config and its network in eval mode (validated first): build it
        once and pass it to :meth:`probabilities` for many batches."""
        return self._restore(checkpoint)

    def probabilities(
        self, checkpoint: Checkpoint, items: Sequence[Record], *,
        cache: EmbeddingCache | None = None, restored: tuple[TrainConfig, nn.Module] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """Class probabilities (softmax of the network's outputs), float32 ``[n, classes]`` in
        the order of ``checkpoint.labels``: the same network path as :meth:`predict`, under the
        checkpoint's seed and threads, so one determinism class computes the same bits.
        ``extra`` goes into the inputs' context (e.g. a decoded-image cache)."""
        cfg, net = restored if restored is not None else self._restore(checkpoint)
        if not items:
            return torch.zeros((0, len(checkpoint.labels)), dtype=torch.float32)
        prep = {k[5:]: v for k, v in checkpoint.tensors.items() if k.startswith("prep.")}
        ctx = Context(cache if cache is not None else _DEFAULT_CACHE)
        ctx.extra.update(extra or {})
        with deterministic(cfg.seed, cfg.threads):
            x = self.inputs(cfg, items, prep, checkpoint.extra, ctx)
        with deterministic(cfg.seed, cfg.threads), torch.inference_mode():
            return torch.softmax(net(x).to(torch.float32), dim=1).contiguous()

    def evaluate(
        self, checkpoint: Checkpoint, items: Sequence[Record], *, cache: EmbeddingCache | None = None
    ) -> Evaluation:
        """Accuracy of ``checkpoint`` on labelled ``items``."""
        predicted = self.predict(checkpoint, items, cache=cache)
        return Evaluation(sum(p == r.label for p, r in zip(predicted, items)), len(items))

    def validate(self, checkpoint: Checkpoint) -> None:
        """Check an (untrusted) checkpoint's tensors against this family's network: exactly the
        expected names, shapes and dtypes, all finite. Raises MalformedCheckpointError."""
        if checkpoint.family != self.name:
            raise MalformedCheckpointError(f"checkpoint is {checkpoint.family!r}, not {self.name}")
        try:
            cfg = self.config_type.from_dict(checkpoint.config)
        except UsageError as exc:
            raise MalformedCheckpointError(f"checkpoint config is invalid: {exc}") from exc
        if not isinstance(checkpoint.extra, dict):
            raise MalformedCheckpointError("checkpoint extra metadata is not an object")
        self.check_extra(cfg, checkpoint.extra)
        with torch.random.fork_rng(devices=[]):
            net = self.network(cfg, checkpoint.extra, len(checkpoint.labels))
        want = {f"net.{k}": (tuple(v.shape), v.dtype) for k, v in net.state_dict().items()}
        want.update({f"prep.{k}": (s, DTYPE) for k, s in self.prep_shapes(cfg, checkpoint.extra)
                     .items()})
        have = {k: (tuple(v.shape), v.dtype) for k, v in checkpoint.tensors.items()}
        if set(have) != set(want):
            missing, unexpected = sorted(set(want) - set(have)), sorted(set(have) - set(want))
            raise MalformedCheckpointError(
                f"{self.name} checkpoint tensors do not fit the network: missing {missing}, "
                f"unexpected {unexpected}"
            )
        for name, (shape, dtype) in want.items():
            if have[name] != (shape, dtype):
                raise MalformedCheckpointError(
                    f"tensor {name} is {have[name][1]} {list(have[name][0])}, expected "
                    f"{dtype} {list(shape)}"
                )
            t = checkpoint.tensors[name]
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise MalformedCheckpointError(f"tensor {name} holds NaN or infinite values")


def check_split(train: Sequence[Record], val: Sequence[Record]) -> None:
    """Refuse an empty split, or an item both trained and validated on."""
    if not train or not val:
        raise TrainingError("training needs at least one training and one validation item")
    shared = {r.cid for r in train} & {r.cid for r in val}
    if shared:  # a model measured on what it was trained on would report a false metric
        raise TrainingError(f"{len(shared)} item(s) are both training and validation items, "
                            f"e.g. {min(shared)}")


def init_prep(init: Checkpoint) -> tuple[Prep, dict[str, Any]]:
    """A checkpoint's preprocessing tensors and extra JSON (kept by a fine-tune)."""
    prep = {k[5:]: v for k, v in init.tensors.items() if k.startswith("prep.")}
    return prep, dict(init.extra)


def optimizer(net: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser of every fit: AdamW with the config's learning rate and weight decay."""
    return torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def epoch_perms(n: int, cfg: TrainConfig) -> Iterator[torch.Tensor]:
    """One permutation of ``n`` items per epoch, from a generator seeded by ``cfg.seed``: the
    order of the minibatches ``perm[s : s + batch_size]``."""
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.epochs):
        yield torch.randperm(n, generator=gen)


def network_tensors(net: nn.Module, prep: Prep) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors: ``net.*`` (the network's state) and ``prep.*``."""
    tensors = {f"net.{k}": v.detach().clone() for k, v in net.state_dict().items()}
    tensors.update({f"prep.{k}": v.clone() for k, v in prep.items()})
    return tensors


def evaluate_network(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Evaluation:
    """Accuracy of ``net`` on inputs ``x`` with label indices ``y`` (−1: unknown, wrong)."""
    net.eval()
    with torch.inference_mode():
        pred = net(x).argmax(dim=1)
    return Evaluation(int((pred == y).sum()), int(y.shape[0]))
