"""bench.end_to_end: the paper's VTAB-1k recipe on an npz task, and a tiny run on the CPU."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bench import end_to_end
from experiments.configs import PAPER_LR


def test_config_is_the_paper_recipe_on_the_given_task() -> None:
    config = end_to_end.vtab_shaped_config("/data/x.npz", like="dtd")
    assert (config.data.task, config.data.source) == ("/data/x.npz", "npz")
    assert config.backbone.name == "vit-b16-random"
    assert (config.backbone.image_size, config.train.epochs, config.train.batch_size) == (
        224, 500, 64,
    )  # fmt: skip
    assert config.train.optim.learning_rate == PAPER_LR["dtd"]
    assert (config.search.population, config.search.generations) == (50, 20)
    assert config.method.name == "glora"


def test_overrides_apply_last_and_bad_ones_fail() -> None:
    sets = ["train.epochs=7", "backbone.name=dinov2-s14"]
    config = end_to_end.vtab_shaped_config("x.npz", sets=sets)
    assert (config.train.epochs, config.backbone.name) == (7, "dinov2-s14")
    with pytest.raises(ValueError, match="VTAB-1k"):
        end_to_end.vtab_shaped_config("x.npz", like="fashion_mnist")


def test_a_workdir_holding_a_run_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # pipeline.run would resume the earlier run: the "end to end" time would be only its rest
    task, workdir = tmp_path / "task.npz", tmp_path / "wd"
    end_to_end.vtab_shaped_npz(task, test_size=4)
    (workdir / "train").mkdir(parents=True)
    (workdir / "config.json").write_text("{}")
    ran: list[Path] = []
    monkeypatch.setattr(end_to_end, "run_end_to_end", lambda config, wd: ran.append(wd) or {})
    argv = ["--task", str(task), "--workdir", str(workdir), "--out", str(tmp_path / "e2e.json")]
    with pytest.raises(SystemExit) as exit_info:
        end_to_end.main(argv)
    assert exit_info.value.code == 2 and not ran
    assert f"--workdir {workdir} holds an earlier run" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_end_to_end_on_cpu(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    task = tmp_path / "task.npz"
    np.savez(task, images=rng.integers(0, 256, (1040, 16, 16, 3), dtype=np.uint8),
             labels=rng.integers(0, 4, 1040).astype(np.int32))  # fmt: skip
    out = tmp_path / "e2e.json"
    sets = [
        "backbone.name=vit-ti16-random", "backbone.image_size=32", "backbone.scan=true",
        "train.total_steps=2", "train.log_every=1", "search.population=4", "search.top_k=2",
        "search.num_mutations=2", "search.num_crossovers=2", "search.generations=2",
        "search.param_budget=1000000",
    ]  # fmt: skip
    argv = ["--task", str(task), "--workdir", str(tmp_path / "wd"), "--out", str(out)]
    assert end_to_end.main(argv + [f"--set={s}" for s in sets]) == 0
    result = json.loads(out.read_text())
    assert result["num_test"] == 40
    assert result["end_to_end_seconds"] >= result["train_seconds"] > 0
    assert result["search"]["candidates_evaluated"] == 8
    assert result["merged_test_accuracy"] == result["test_accuracy"]
    assert result["command"].startswith("python -m bench.end_to_end --task")
    with (tmp_path / "wd" / "train" / "metrics.csv").open(newline="") as f:
        rates = [float(r["value"]) for r in csv.DictReader(f) if r["name"] == "train/steps_per_sec"]
    assert len(rates) == 1  # one window per step after the first (its compilation, timed alone)
    assert result["train_steps_per_sec"] == pytest.approx(rates[0])
    assert 0 < result["train_first_step_seconds"] < result["train_seconds"]
    stages = result["stage_seconds"]
    assert list(stages) == ["data", "backbone", "train", "search", "test", "save"]
    assert min(stages.values()) > 0
    assert stages["train"] >= result["train_seconds"]
    assert stages["search"] >= result["search"]["seconds"]
    assert sum(stages.values()) <= result["wall_seconds"] <= result["end_to_end_seconds"]
    assert end_to_end.stage_summary(result).startswith("stages: data ")
