"""The search's progress as metrics: ``<search dir>/metrics.csv`` and TensorBoard, one step per
generation (0: the random population), beside the training's (``experiments.training.metrics``).

    search/best_val_accuracy         the best candidate's val200 accuracy so far
    search/mean_top_k_val_accuracy   the mean over the top-k kept as parents
    search/candidates_evaluated      candidates scored so far
    search/seconds                   wall time of the search so far (carried over a resume)
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

from experiments.training.metrics import MetricWriter
from glora_jax.evolution import GenerationStats

BEST = "search/best_val_accuracy"


def scalars(stats: GenerationStats) -> dict[str, float]:
    return {
        BEST: stats.best_score,
        "search/mean_top_k_val_accuracy": stats.mean_top_k_score,
        "search/candidates_evaluated": stats.candidates_evaluated,
        "search/seconds": stats.seconds,
    }


class SearchLog:
    """``on_generation`` for ``glora_jax.evolutionary_search``, then ``finish(result.history)``
    and ``close()`` (``contextlib.closing``).

    The files open at the first generation this search runs, keeping the rows of the generations
    a resumed search loaded. Where they then do not hold exactly the search's history, in order
    (a kill between the search's saved state and its rows, rows of a search started over, a
    search finished before the log existed), ``finish`` writes them again from it.
    enabled=False (processes other than 0) writes no files.
    """

    def __init__(self, folder: str | pathlib.Path, *, enabled: bool = True) -> None:
        self._folder = pathlib.Path(folder)
        self._enabled = enabled
        self._writer: MetricWriter | None = None

    def _open(self, start_step: int) -> MetricWriter:
        if self._writer is None:
            self._writer = MetricWriter(self._folder, start_step=start_step, enabled=self._enabled)
        return self._writer

    def __call__(self, stats: GenerationStats) -> None:
        self._open(stats.generation - 1).write(stats.generation, scalars(stats))

    def finish(self, history: Sequence[GenerationStats]) -> None:
        expected: dict[str, list[tuple[int, float]]] = {}
        for stats in history:
            for name, value in scalars(stats).items():
                expected.setdefault(name, []).append((stats.generation, float(value)))
        writer = self._open(history[-1].generation if history else -1)
        if writer.history == expected:
            return
        writer.close()
        self._writer = MetricWriter(self._folder, start_step=-1, enabled=self._enabled)
        for stats in history:
            self._writer.write(stats.generation, scalars(stats))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
