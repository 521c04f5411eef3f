"""The search's metrics: one row and one TensorBoard point per generation and metric, in order,
whole after a kill and resume."""

from __future__ import annotations

import contextlib
import csv
import struct
from pathlib import Path

import pytest
from tensorboardX.proto.event_pb2 import Event

from experiments.search_log import BEST, SearchLog
from glora_jax.evolution import GenerationStats

Points = dict[str, list[tuple[int, float]]]


def stats(generation: int, *, run: int = 0) -> GenerationStats:
    return GenerationStats(
        generation=generation,
        best_score=0.5 + generation / 100 + run / 1000,
        mean_top_k_score=0.4 + generation / 100,
        candidates_evaluated=10 * (generation + 1),
        seconds=3.0 * (generation + 1),
    )


def csv_points(folder: Path) -> Points:
    """The csv's rows per metric, in file order."""
    out: Points = {}
    with (folder / "metrics.csv").open(newline="") as f:
        for r in csv.DictReader(f):
            out.setdefault(r["name"], []).append((int(r["step"]), float(r["value"])))
    return out


def tensorboard_points(folder: Path) -> Points:
    """The scalars of the event files as TensorBoard reads them: in file order, a purge (a
    session start at step s) dropping the points before it at steps >= s."""
    out: Points = {}
    for path in sorted((folder / "tensorboard").glob("events.out.tfevents.*")):
        data = path.read_bytes()
        while data:  # TFRecord: length (u64), its crc, the record, its crc
            (length,) = struct.unpack("<Q", data[:8])
            event = Event.FromString(data[12 : 12 + length])
            data = data[16 + length :]
            if event.HasField("session_log"):
                out = {n: [p for p in ps if p[0] < event.step] for n, ps in out.items()}
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


def expected(*history: GenerationStats) -> Points:
    return {
        BEST: [(h.generation, h.best_score) for h in history],
        "search/mean_top_k_val_accuracy": [(h.generation, h.mean_top_k_score) for h in history],
        "search/candidates_evaluated": [(h.generation, h.candidates_evaluated) for h in history],
        "search/seconds": [(h.generation, h.seconds) for h in history],
    }


def approx(points: Points) -> Points:
    """TensorBoard keeps float32."""
    return {n: [(s, pytest.approx(v, rel=1e-6)) for s, v in ps] for n, ps in points.items()}


def test_a_search_logs_each_generation_once_as_it_goes(tmp_path: Path) -> None:
    with contextlib.closing(SearchLog(tmp_path)) as log:
        for g in range(3):
            log(stats(g))
            # on disk before the log closes: a kill now loses nothing of this generation
            want = expected(*map(stats, range(g + 1)))
            assert csv_points(tmp_path) == want
            assert tensorboard_points(tmp_path) == approx(want)
        log.finish([stats(g) for g in range(3)])
    assert csv_points(tmp_path) == expected(*map(stats, range(3)))
    assert tensorboard_points(tmp_path) == approx(expected(*map(stats, range(3))))


@pytest.mark.parametrize("rows_written", [3, 4])
def test_a_resumed_search_keeps_loaded_rows_and_restores_the_ones_a_kill_lost(
    tmp_path: Path, rows_written: int
) -> None:
    """The first run saved the search state of generations 0..3 but was killed before logging
    generation 3 (rows_written=3) or after it (4); the resumed one runs 4 and 5."""
    with contextlib.closing(SearchLog(tmp_path)) as log:
        for g in range(rows_written):
            log(stats(g))
    with contextlib.closing(SearchLog(tmp_path)) as log:
        for g in (4, 5):
            log(stats(g))
        log.finish([stats(g) for g in range(6)])
    assert csv_points(tmp_path) == expected(*map(stats, range(6)))  # in order
    assert tensorboard_points(tmp_path) == approx(expected(*map(stats, range(6))))


def test_rows_of_a_search_started_over_are_replaced(tmp_path: Path) -> None:
    """Search 0 logged generations 0..2; its state was removed and search 1 killed after saving
    generation 0, before logging it; the resumed search 1 runs generation 1 only."""
    with contextlib.closing(SearchLog(tmp_path)) as log:
        for g in range(3):
            log(stats(g))
    with contextlib.closing(SearchLog(tmp_path)) as log:
        log(stats(1, run=1))
        log.finish([stats(0, run=1), stats(1, run=1)])
    assert csv_points(tmp_path) == expected(stats(0, run=1), stats(1, run=1))
    assert tensorboard_points(tmp_path) == approx(expected(stats(0, run=1), stats(1, run=1)))


def test_a_finished_search_started_again_writes_what_is_missing(tmp_path: Path) -> None:
    with contextlib.closing(SearchLog(tmp_path)) as log:
        log.finish([stats(g) for g in range(2)])  # no log existed: all of it
    with contextlib.closing(SearchLog(tmp_path)) as log:
        log.finish([stats(g) for g in range(2)])  # nothing new
    assert csv_points(tmp_path) == expected(stats(0), stats(1))
    assert tensorboard_points(tmp_path) == approx(expected(stats(0), stats(1)))


@pytest.mark.parametrize("logged", [[0], [2]])
def test_other_processes_write_no_files(tmp_path: Path, logged: list[int]) -> None:
    """logged=[2]: a resumed search whose finish restores generations 0 and 1 (on process 0)."""
    with contextlib.closing(SearchLog(tmp_path / "search", enabled=False)) as log:
        for g in logged:
            log(stats(g))
        log.finish([stats(g) for g in range(max(logged) + 1)])
    assert not (tmp_path / "search").exists()


def test_a_kill_before_finish_leaves_one_row_per_generation(tmp_path: Path) -> None:
    """Search 0 logged generations 0..2; search 1, started over and resumed after its generation
    0, logs generation 1 and is killed before finish: generation 1 is search 1's row alone."""
    with contextlib.closing(SearchLog(tmp_path)) as log:
        for g in range(3):
            log(stats(g))
    with contextlib.closing(SearchLog(tmp_path)) as log:
        log(stats(1, run=1))
        assert csv_points(tmp_path) == expected(stats(0), stats(1, run=1))
