"""experiments.vtab end to end on tiny settings: every stage, resume, merged == adapted, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments import vtab
from experiments.config import ExperimentConfig, override
from experiments.configs import paper, quickstart
from experiments.vtab_table import PAPER_LR

pytest.importorskip("sklearn")  # the digits task

TINY = [
    "--task=digits",
    "--set", "backbone.name=vit-ti16-random",
    "--set", "backbone.image_size=16",
    "--set", "train.epochs=2",
    "--set", "train.batch_size=100",
    "--set", "train.log_every=4",
    "--set", "train.checkpoint_every=4",
    "--set", "train.optim.learning_rate=1e-3",
    "--set", "search.param_budget=200000",
    "--set", "search.population=6",
    "--set", "search.top_k=2",
    "--set", "search.num_mutations=3",
    "--set", "search.num_crossovers=3",
    "--set", "search.generations=2",
    "--set", "search.configs_per_call=6",
    "--set", "eval_batch_size=200",
]  # fmt: skip


@pytest.mark.slow
def test_glora_end_to_end_and_resume(tmp_path):
    workdir = tmp_path / "runs"
    assert vtab.main(["--adapter=glora", f"--workdir={workdir}", *TINY]) == 0
    out = workdir / "digits"
    result = json.loads((out / "result.json").read_text())
    assert result["test_accuracy"] == result["merged_test_accuracy"]
    assert result["test_accuracy"] > 0.1  # above chance: 10 classes
    assert 0 < result["trainable_params"] <= 200000
    # generation 0 is the random population, each later one 3 mutations + 3 crossovers
    assert result["search"]["candidates_evaluated"] == 6 + 1 * (3 + 3)
    subnet = json.loads((out / "subnet.json").read_text())
    assert subnet["num_params"] == result["trainable_params"]
    for png in ("search_accuracy_vs_params", "subnet_layers", "params_per_type"):
        assert (out / "plots" / f"{png}.png").stat().st_size > 1000
    metrics = (out / "train" / "metrics.csv").read_text()
    assert "train/loss" in metrics
    merged = np.load(out / "merged.npz")
    assert "head/kernel" in merged.files
    # Started again on the same workdir: training and search resume from their checkpoints
    # (nothing left to do) and give the same result.
    assert vtab.main(["--adapter=glora", f"--workdir={workdir}", *TINY]) == 0
    again = json.loads((out / "result.json").read_text())
    assert again["test_accuracy"] == result["test_accuracy"]
    assert again["trainable_params"] == result["trainable_params"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["flora", "bitfit"])
def test_other_methods_end_to_end(tmp_path, method):
    assert vtab.main([f"--adapter={method}", f"--workdir={tmp_path}", *TINY]) == 0
    result = json.loads((tmp_path / "digits" / "result.json").read_text())
    assert result["test_accuracy"] == result["merged_test_accuracy"]
    assert result["search"] == {}


def test_presets_and_overrides():
    config = paper("smallnorb_ele", method="lora")
    assert config.train.optim.learning_rate == PAPER_LR["smallnorb_ele"] == 1e-4
    assert (config.train.epochs, config.train.batch_size) == (500, 64)
    assert (config.backbone.name, config.backbone.drop_path) == ("vit-b16", 0.1)
    assert config.method.name == "lora"
    changed = override(quickstart(), ["train.optim.learning_rate=0.01", "backbone.dtype=bfloat16"])
    assert changed.train.optim.learning_rate == 0.01 and changed.backbone.dtype == "bfloat16"
    with pytest.raises(ValueError, match="unknown config key 'train.lr'"):
        override(ExperimentConfig(), ["train.lr=1"])
    with pytest.raises(ValueError, match="not of the form"):
        override(ExperimentConfig(), ["train.epochs"])
    with pytest.raises(ValueError, match="unknown backbone"):
        override(ExperimentConfig(), ["backbone.name=resnet"])
    with pytest.raises(ValueError, match="not a VTAB-1k task"):
        paper("imagenet")


def test_missing_vtab_data_and_checkpoint_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="tfds build|download|prepare"):
        vtab.main(["--task=dtd", f"--data_dir={tmp_path}", f"--workdir={tmp_path}/w"])
    with pytest.raises(FileNotFoundError, match="ViT-B_16.npz"):
        vtab.main(
            ["--task=digits", "--preset=quickstart", "--set", "backbone.name=vit-b16",
             f"--workdir={tmp_path}/w2"]
        )  # fmt: skip
