"""Scalar metrics to ``<workdir>/metrics.csv`` (long format: step,name,value) and TensorBoard.

On resume from step s, rows and events at steps > s (written after the checkpoint by the run
that stopped) are dropped, so the logs read as one uninterrupted run.
"""

from __future__ import annotations

import csv
import pathlib
import statistics
import time
from collections.abc import Mapping
from types import TracebackType

from tensorboardX import SummaryWriter

from peft_core.atomic_files import replacing

History = dict[str, list[tuple[int, float]]]

#: Steps per second of each logged window, its steps over their seconds, the first step of a
#: run and the pauses for checkpoints and evaluations left out (``experiments.training.loop``).
STEPS_PER_SEC = "train/steps_per_sec"
#: Seconds from a run's (or resumed run's) start of the loop to its first step's result: the
#: step's compilation plus one step, logged at that step.
FIRST_STEP_S = "train/first_step_s"

CSV_NAME = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
#: tensorboardX's writer thread writes events as they come and flushes its file at most this
#: often (its default, 120 s, would let a kill lose the last two minutes' points)
TENSORBOARD_FLUSH_S = 1


class MetricWriter:
    """Writes scalars and keeps them in ``history`` {name: [(step, value), ...]}.

    enabled=False (processes other than 0 of a pod) keeps the history but writes no files.
    """

    def __init__(
        self, workdir: str | pathlib.Path, *, start_step: int = 0, enabled: bool = True
    ) -> None:
        self.history: History = {}
        self._csv_path = pathlib.Path(workdir) / CSV_NAME
        self._enabled = enabled
        if not enabled:
            return
        self._csv_path.parent.mkdir(parents=True, exist_ok=True)
        for step, name, value in self._kept_rows(start_step):
            self.history.setdefault(name, []).append((step, value))
        self._rewrite_csv()
        self._tb = SummaryWriter(
            str(self._csv_path.parent / TENSORBOARD_DIR),
            purge_step=start_step + 1,
            flush_secs=TENSORBOARD_FLUSH_S,
            # its file name holds the second it was made: a writer started in the same second
            # (a quick resume) would truncate the earlier one's; the suffix orders the two
            filename_suffix=f".{time.time_ns()}",
        )

    def _kept_rows(self, start_step: int) -> list[tuple[int, str, float]]:
        """The csv's rows up to ``start_step``; a row a kill tore mid-append (its line end
        missing) is left out."""
        if not self._csv_path.exists():
            return []
        rows = []
        with self._csv_path.open(newline="") as f:
            lines = f.readlines()
        if lines and not lines[-1].endswith("\n"):  # torn: "0.8125" cut to "0." reads as 0.0
            lines.pop()
        for r in csv.DictReader(lines):
            try:
                rows.append((int(r["step"]), r["name"], float(r["value"])))
            except (TypeError, ValueError):  # a row that does not parse: "10,train/lo"
                continue
        return [r for r in rows if r[0] <= start_step]

    def _rewrite_csv(self) -> None:
        """The kept history as the csv, atomically (a kill here keeps the old file)."""
        with replacing(self._csv_path) as partial, partial.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["step", "name", "value"])
            rows = sorted((s, n, v) for n, points in self.history.items() for s, v in points)
            out.writerows(rows)

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """Record every scalar at ``step``."""
        for name, value in scalars.items():
            self.history.setdefault(name, []).append((step, float(value)))
        if not self._enabled:
            return
        with self._csv_path.open("a", newline="") as f:
            csv.writer(f).writerows([step, name, float(v)] for name, v in scalars.items())
        for name, value in scalars.items():
            self._tb.add_scalar(name, float(value), global_step=step)

    def close(self) -> None:
        if self._enabled:
            self._tb.close()

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def latest(history: History, name: str) -> float | None:
    """The last logged value of ``name`` (None if never logged)."""
    points = history.get(name)
    return points[-1][1] if points else None


def steady_rate(history: History, name: str = STEPS_PER_SEC) -> float | None:
    """Median of a logged window rate (None if none was logged). The loop's windows leave out
    each run's first step (its compilation: ``FIRST_STEP_S``), checkpoints and evaluations."""
    values = [value for _, value in history.get(name, [])]
    return statistics.median(values) if values else None
