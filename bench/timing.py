"""Wall-clock timing of device work, framework-agnostic (no JAX or torch import here).

Method (the device tool's METHOD.md): ``warmup`` untimed calls first (compilation, autotuning,
allocator growth), then ``repeats`` samples, each a window of ``window`` calls launched back to
back and timed from the first launch to the device being done with the last (``sync`` blocks on
its result), divided by ``window``; summarised by the median and the p10/p90 spread. ``window=1``
is the latency of one call; a larger window is the throughput of a loop that does not wait
between calls, as the trainer's step loop does (the host prepares call i+1 while the device
runs call i). With ``min_window_s`` a window holds as many more calls as it takes to last that
long (as ``timeit``'s autorange), so that short calls (inference at batch 1: about 1 ms) are not
timed over a few milliseconds of host jitter. The caller rotates among several input sets by the
call index, so no call reuses the previous one's inputs straight from cache.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class TimingSettings:
    """warmup: untimed calls; repeats: timed samples (median over them); input_sets: how many
    distinct random input batches the caller keeps on device and rotates through; window:
    calls per sample, launched without waiting in between (1: each call timed alone);
    min_window_s: the shortest a sample may last, in seconds (more calls per window where
    ``window`` calls take less; 0: exactly ``window``)."""

    warmup: int = 5
    repeats: int = 20
    input_sets: int = 3
    window: int = 1
    min_window_s: float = 0.0

    def __post_init__(self) -> None:
        if min(self.warmup, self.repeats, self.input_sets, self.window) < 1:
            raise ValueError(
                f"warmup, repeats, input_sets and window must be >= 1, got {self.warmup}, "
                f"{self.repeats}, {self.input_sets}, {self.window}"
            )
        if not self.min_window_s >= 0:
            raise ValueError(f"min_window_s must be >= 0 seconds, got {self.min_window_s}")

    def describe(self) -> str:
        """How a row was timed, for notes and JSON."""
        if self.window == 1 and not self.min_window_s:
            return f"median of {self.repeats} calls, each timed alone"
        at_least = f", at least {self.min_window_s * 1e3:g} ms," if self.min_window_s else ""
        return (
            f"median of {self.repeats} windows of {self.window}{' or more' * bool(at_least)} "
            f"calls{at_least} launched back to back"
        )


class Timing(NamedTuple):
    """Seconds per call: median and the 10th / 90th percentiles of the timed calls."""

    median_s: float
    p10_s: float
    p90_s: float


def time_calls(
    call: Callable[[int], Any], *, sync: Callable[[Any], Any], settings: TimingSettings
) -> Timing:
    """Seconds per ``call(i)`` (i = 0, 1, ...; the caller picks input set ``i % input_sets``).

    ``sync(result)`` must return only once the device finished the call's work and all work
    launched before it (JAX: ``jax.block_until_ready`` on a result that depends on the earlier
    calls, e.g. through the donated train state, or that runs after them on the device's one
    stream; torch: ``torch.cuda.synchronize``).
    """
    return time_interleaved({"": call}, sync=sync, settings=settings)[""]


def time_interleaved(
    calls: Mapping[str, Callable[[int], Any]], *, sync: Callable[[Any], Any],
    settings: TimingSettings,
) -> dict[str, Timing]:  # fmt: skip
    """``time_calls`` of several calls, their windows taken in turn: sample k of every call is
    timed before sample k + 1 of any, in the order of ``calls`` for even k and reversed for odd
    k, so a drift of the machine (clocks, temperature, other load) reaches every call alike.
    For an A/B of calls whose ratio matters (e.g. one executable on two param trees). Each call
    counts its own i from 0; all warm-up calls come first. With ``settings.min_window_s`` one
    more untimed window of each call after them sizes the windows, the same for every call:
    as many calls as the fastest needs to last ``min_window_s``, at least ``settings.window``."""
    counters = dict.fromkeys(calls, 0)

    def window(label: str, size: int) -> float:
        start = time.perf_counter()
        for _ in range(size):
            result = calls[label](counters[label])
            counters[label] += 1
        sync(result)
        return (time.perf_counter() - start) / size

    for label in calls:
        for _ in range(settings.warmup):
            window(label, 1)
    size = settings.window
    if settings.min_window_s:
        fastest = min(window(label, size) for label in calls)
        size = max(size, math.ceil(settings.min_window_s / max(fastest, 1e-9)))
    samples: dict[str, list[float]] = {label: [] for label in calls}
    for k in range(settings.repeats):
        for label in list(calls)[:: 1 if k % 2 == 0 else -1]:
            samples[label].append(window(label, size))
    return {label: _summary(s) for label, s in samples.items()}


def _summary(samples: list[float]) -> Timing:
    """Median and 10th / 90th percentiles."""
    p10, median, p90 = np.percentile(samples, [10, 50, 90])
    return Timing(float(median), float(p10), float(p90))
