"""Wall-clock timing of device work, framework-agnostic (no JAX or torch import here).

Method (the device tool's METHOD.md): ``warmup`` untimed calls first (compilation, autotuning,
allocator growth), then ``repeats`` calls each timed from launch to the device being done
(``sync`` blocks on the call's result), summarised by the median and the p10/p90 spread. The
caller rotates among several input sets by the call index, so no call reuses the previous one's
inputs straight from cache.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class TimingSettings:
    """warmup: untimed calls; repeats: timed calls (median over them); input_sets: how many
    distinct random input batches the caller keeps on device and rotates through."""

    warmup: int = 5
    repeats: int = 20
    input_sets: int = 3

    def __post_init__(self) -> None:
        if self.warmup < 1 or self.repeats < 1 or self.input_sets < 1:
            raise ValueError(
                f"warmup, repeats and input_sets must be >= 1, got {self.warmup}, "
                f"{self.repeats}, {self.input_sets}"
            )


class Timing(NamedTuple):
    """Seconds per call: median and the 10th / 90th percentiles of the timed calls."""

    median_s: float
    p10_s: float
    p90_s: float


def time_calls(
    call: Callable[[int], Any], *, sync: Callable[[Any], Any], settings: TimingSettings
) -> Timing:
    """Time ``call(i)`` (i = 0, 1, ...; the caller picks input set ``i % input_sets``).

    ``sync(result)`` must return only once the device finished the call's work (JAX:
    ``jax.block_until_ready``; torch: ``torch.cuda.synchronize``).
    """
    for i in range(settings.warmup):
        sync(call(i))
    samples = []
    for i in range(settings.warmup, settings.warmup + settings.repeats):
        start = time.perf_counter()
        sync(call(i))
        samples.append(time.perf_counter() - start)
    p10, median, p90 = np.percentile(samples, [10, 50, 90])
    return Timing(float(median), float(p10), float(p90))
