"""The issue's targets as checks over measured rows: throughput ratios and a wall-time bound.

A ratio target holds at every batch size where both rows were measured:
``items_per_s(row) / items_per_s(reference) >= min_ratio``. The time target bounds a row's
``step_s`` (the whole search is one row whose step is the search).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from bench.peaks import card
from bench.results import Row


@dataclasses.dataclass(frozen=True)
class Target:
    """row >= min_ratio x reference (throughput), or row's seconds <= max_seconds."""

    row: str
    reference: str | None = None
    min_ratio: float | None = None
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if (self.reference is None) == (self.max_seconds is None):
            raise ValueError(f"target on {self.row}: give either a reference or max_seconds")
        if self.reference is not None and self.min_ratio is None:
            raise ValueError(f"target on {self.row}: a reference needs min_ratio")

    def met(self, value: float) -> bool:
        """Whether ``value`` (the ratio, or the row's seconds) meets this target."""
        if self.min_ratio is not None:
            return value >= self.min_ratio
        assert self.max_seconds is not None
        return value <= self.max_seconds


TARGETS = (
    Target("jax/train/lora-r8", "torch/train/lora-r8-compile", min_ratio=1.5),
    Target("jax/train/flora-r8", "torch/train/lora-r8-compile", min_ratio=1.5),
    # the same with grads="pallas" (peft_core.one_read; what "auto" runs on an H200 or H100
    # with its default tiles, calls 109-112; slower with the tiles before, calls 106-108)
    Target("jax/train/lora-r8-pallas", "torch/train/lora-r8-compile", min_ratio=1.5),
    Target("jax/train/flora-r8-pallas", "torch/train/lora-r8-compile", min_ratio=1.5),
    Target("jax/train/glora-supernet-k1", "torch/train/glora-r8-compile", min_ratio=1.3),
    Target("jax/train/glora-supernet-k4", "torch/train/glora-r8-compile", min_ratio=1.3),
    Target("jax/train/glora-supernet-k1", "jax/train/lora-r8", min_ratio=0.9),
    Target("jax/train/glora-supernet-k4", "jax/train/lora-r8", min_ratio=0.9),
    Target("jax/infer/merged-glora", "jax/infer/plain", min_ratio=0.98),
    Target("jax/infer/merged-glora", "torch/infer/plain", min_ratio=1.0),
    Target("jax/search/evolution", max_seconds=60.0),
    Target("jax/e2e/glora-vtab1k-task", max_seconds=600.0),
)


def judged(size: str | None, devices: Sequence[str] = ()) -> bool:
    """Whether rows of bench size ``size`` measured on ``devices`` (the distinct devices the
    files recorded) get a verdict: the targets are stated for "full" (None: a file of a version
    that did not record its size) on one H100, so every file that names its device must name
    the same host of one H100 SXM ("... H100 ... x1", ``bench.peaks.card`` "H100": rows of two
    machines' kinds make no one-machine ratio, and a host of several GPUs, an H100 PCIe or NVL
    card or a GH200 is not the machine the targets are stated for)."""
    one_h100 = all(card(d) == "H100" and d.endswith(" x1") for d in devices)
    return size in (None, "full") and len(set(devices)) <= 1 and one_h100


@dataclasses.dataclass(frozen=True)
class Check:
    """One evaluated target at one batch: ``value`` is the ratio or the seconds."""

    target: Target
    batch: int
    value: float
    passed: bool

    def line(self, *, judged: bool = True) -> str:
        """The check as printed; ``judged`` False (a size the targets are not stated for):
        "n/a" in place of PASS / MISS."""
        t = self.target
        verdict = ("PASS" if self.passed else "MISS") if judged else "n/a "
        if t.reference is None:
            return f"{verdict} {t.row}: {self._shown(1)} s (target <= {t.max_seconds:.0f} s)"
        return (
            f"{verdict} {t.row}@{self.batch} / {t.reference}@{self.batch} = {self._shown(2)}x "
            f"(target >= {t.min_ratio}x)"
        )

    def _shown(self, digits: int) -> str:
        """``value`` with ``digits`` decimals, or more where fewer would round it onto the other
        side of the target than the verdict (a ratio of 0.898 missing 0.9 is not "0.90x")."""
        for shown in (f"{self.value:.{d}f}" for d in range(digits, 17)):
            if self.target.met(float(shown)) is self.passed:
                return shown
        return repr(self.value)


def evaluate_targets(
    rows: Sequence[Row], targets: Sequence[Target] = TARGETS
) -> tuple[list[Check], list[str]]:
    """(checks made, targets that could not be checked for a missing row)."""
    by_key = {r.key: r for r in rows}
    checks, missing = [], []
    for t in targets:
        found = [r for r in rows if r.name == t.row]
        made = []
        for r in found:
            if t.max_seconds is not None:
                made.append(Check(t, r.batch, r.step_s, t.met(r.step_s)))
                continue
            ref = by_key.get(f"{t.reference}@{r.batch}")
            if ref is not None:
                ratio = r.items_per_s / ref.items_per_s
                made.append(Check(t, r.batch, ratio, t.met(ratio)))
        if not made:
            missing.append(f"{t.row} vs {t.reference or f'{t.max_seconds} s'}: not measured")
        checks.extend(made)
    return checks, missing
