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

from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.summary import scalar

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
        self._tb = EventFile(self._csv_path.parent / TENSORBOARD_DIR, purge_step=start_step + 1)

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
        self._tb.write(step, scalars)

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


class EventFile:
    """A TensorBoard events file in ``folder`` whose points are in the file (flushed) once
    ``write`` returns, as the csv's rows are: tensorboardX's SummaryWriter queues them for a
    thread that flushed at most every second or so, and a kill after a checkpoint lost the
    points before it, which the resumed run keeps and does not log again.

    It opens with a session start at ``purge_step``: TensorBoard drops the earlier files'
    points at steps >= purge_step (a resumed run's, logged after its checkpoint).
    """

    def __init__(self, folder: pathlib.Path, *, purge_step: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        # the name holds the second it was made: a file made in the same second (a quick
        # resume) would truncate the earlier one's; the suffix orders the two
        self._file = EventsWriter(str(folder / "events"), f".{time.time_ns()}")
        self._add([Event(step=purge_step, session_log=SessionLog(status=SessionLog.START))])

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        self._add([Event(step=step, summary=scalar(n, float(v))) for n, v in scalars.items()])

    def _add(self, events: list[Event]) -> None:
        now = time.time()
        for event in events:
            event.wall_time = now
            self._file.write_event(event)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def latest(history: History, name: str) -> float | None:
    """The last logged value of ``name`` (None if never logged)."""
    points = history.get(name)
    return points[-1][1] if points else None


def steady_rate(history: History, name: str = STEPS_PER_SEC) -> float | None:
    """Median of a logged window rate (None if none was logged). The loop's windows leave out
    each run's first step (its compilation: ``FIRST_STEP_S``), checkpoints and evaluations."""
    values = [value for _, value in history.get(name, [])]
    return statistics.median(values) if values else None
