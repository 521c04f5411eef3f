"""Training settings as frozen dataclasses; defaults are the GLoRA VTAB-1k recipe.

Recipe (reference ``GLoRA/supernet.py``): AdamW lr 1e-4, weight decay 1e-4 on every trainable
tensor, batch 64, 500 epochs, cosine schedule with 10 linear warm-up epochs from 1e-6 and a floor
of 1e-5, no gradient clipping. Override any knob with ``dataclasses.replace`` or build the config
from a plain mapping (e.g. an ``ml_collections.ConfigDict.to_dict()``) with ``from_mapping``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from experiments.data.pipeline import check_seed

#: Regex over '/'-joined param paths selecting the task head (trained, never adapted).
HEAD_PATTERN = r"head/.*"


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW + warm-up/cosine schedule; see ``experiments.training.optim``."""

    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    warmup_epochs: float = 10.0
    warmup_start_lr: float = 1e-6
    min_lr: float = 1e-5
    clip_grad_norm: float | None = None

    def __post_init__(self) -> None:
        _check_positive(self, "learning_rate", "eps")
        _check_non_negative(self, "weight_decay", "warmup_epochs", "warmup_start_lr", "min_lr")
        for name in ("b1", "b2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("min_lr", "warmup_start_lr"):
            if getattr(self, name) > self.learning_rate:
                raise ValueError(
                    f"{name} {getattr(self, name)} exceeds learning_rate {self.learning_rate}: "
                    f"the schedule would climb above its peak (lower {name} with it)"
                )
        if self.clip_grad_norm is not None:
            _check_positive(self, "clip_grad_norm")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything ``experiments.training.train`` needs besides model, data and adapter.

    total_steps: overrides ``epochs * steps_per_epoch`` when set.
    num_configs: K random subnets per step, each on batch_size / K examples (only when a
    supernet samples its subnets, where ``sharding.check_batch_split`` refuses a batch K does not
    divide; a fixed or no cfg trains on the whole batch).
    checkpoint_every / log_every / eval_every: in steps; for checkpoint_every and eval_every 0
    disables the periodic action (a checkpoint and an evaluation are still made at the end);
    log_every must be >= 1.
    eval_configs: for a supernet without a fixed cfg, how many random subnets (fixed seed) the
    periodic evaluation averages.
    """

    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    batch_size: int = 64
    epochs: int = 500
    total_steps: int | None = None
    seed: int = 0
    head_pattern: str = HEAD_PATTERN
    num_configs: int = 1
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    log_every: int = 50
    eval_every: int = 0
    eval_batch_size: int = 256
    eval_configs: int = 4

    def __post_init__(self) -> None:
        _check_positive(
            self,
            "batch_size",
            "epochs",
            "num_configs",
            "keep_checkpoints",
            "log_every",
            "eval_batch_size",
            "eval_configs",
        )
        _check_non_negative(self, "checkpoint_every", "eval_every")
        check_seed(self.seed)
        try:
            re.compile(self.head_pattern)
        except re.error as e:
            raise ValueError(f"head_pattern {self.head_pattern!r} is no regex: {e}") from e
        if self.total_steps is not None and self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1 or None, got {self.total_steps}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a nested mapping; an ``optim`` sub-mapping fills ``OptimConfig``."""
        values = dict(values)
        optim = values.pop("optim", {})
        _check_known(cls, values, "TrainConfig")
        _check_known(OptimConfig, optim, "TrainConfig.optim")
        return cls(optim=OptimConfig(**optim), **values)

    def num_steps(self, steps_per_epoch: int) -> int:
        """Total optimiser steps: ``total_steps`` or ``epochs * steps_per_epoch``."""
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        return self.total_steps if self.total_steps is not None else self.epochs * steps_per_epoch


def _check_known(cls: type, values: Mapping[str, Any], what: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; known: {sorted(known)}")


def _check_positive(obj: object, *names: str) -> None:
    """ValueError unless each field is finite and > 0 (NaN and inf fail every comparison's
    purpose: an inf learning rate or NaN eps would only show as a non-finite loss)."""
    for name in names:
        value = getattr(obj, name)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be > 0 and finite, got {value}")


def _check_non_negative(obj: object, *names: str) -> None:
    """ValueError unless each field is finite and >= 0."""
    for name in names:
        value = getattr(obj, name)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be >= 0 and finite, got {value}")
