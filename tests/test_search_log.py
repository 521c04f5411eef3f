"""The search's metrics.csv: one row per generation and metric, whole after a kill and resume."""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path

import pytest

from experiments.search_log import BEST, SearchLog
from glora_jax.evolution import GenerationStats


def stats(generation: int) -> GenerationStats:
    return GenerationStats(
        generation=generation,
        best_score=0.5 + generation / 100,
        mean_top_k_score=0.4 + generation / 100,
        candidates_evaluated=10 * (generation + 1),
        seconds=3.0 * (generation + 1),
    )


def rows(folder: Path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    with (folder / "metrics.csv").open(newline="") as f:
        for r in csv.DictReader(f):
            out.setdefault(r["name"], []).append((int(r["step"]), float(r["value"])))
    return {name: sorted(points) for name, points in out.items()}


def expected(generations: range) -> dict[str, list[tuple[int, float]]]:
    history = [stats(g) for g in generations]
    return {
        BEST: [(h.generation, h.best_score) for h in history],
        "search/mean_top_k_val_accuracy": [(h.generation, h.mean_top_k_score) for h in history],
        "search/candidates_evaluated": [(h.generation, h.candidates_evaluated) for h in history],
        "search/seconds": [(h.generation, h.seconds) for h in history],
    }


def test_a_search_logs_each_generation_once(tmp_path: Path) -> None:
    with contextlib.closing(SearchLog(tmp_path)) as log:
        for g in range(3):
            log(stats(g))
            assert rows(tmp_path)[BEST][-1] == (g, stats(g).best_score)  # written as it goes
        log.finish([stats(g) for g in range(3)])
    assert rows(tmp_path) == expected(range(3))
    assert any((tmp_path / "tensorboard").iterdir())


@pytest.mark.parametrize("rows_written", [3, 4])
def test_a_resumed_search_keeps_loaded_rows_and_fills_the_one_a_kill_lost(
    tmp_path: Path, rows_written: int
) -> None:
    """The first run saved the state of generations 0..3 but was killed before writing row 3
    (rows_written=3) or after it (4); the resumed one runs 4 and 5."""
    with contextlib.closing(SearchLog(tmp_path)) as log:
        for g in range(rows_written):
            log(stats(g))
    with contextlib.closing(SearchLog(tmp_path)) as log:
        for g in (4, 5):
            log(stats(g))
        log.finish([stats(g) for g in range(6)])
    assert rows(tmp_path) == expected(range(6))


def test_a_finished_search_started_again_writes_what_is_missing(tmp_path: Path) -> None:
    with contextlib.closing(SearchLog(tmp_path)) as log:
        log.finish([stats(g) for g in range(2)])  # no log existed: all of it
    with contextlib.closing(SearchLog(tmp_path)) as log:
        log.finish([stats(g) for g in range(2)])  # nothing new
    assert rows(tmp_path) == expected(range(2))


def test_other_processes_write_no_files(tmp_path: Path) -> None:
    with contextlib.closing(SearchLog(tmp_path / "search", enabled=False)) as log:
        log(stats(0))
        log.finish([stats(0)])
    assert not (tmp_path / "search").exists()
