"""experiments.vtab end to end on tiny settings: every stage, resume, merged == adapted, errors."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image
from two_processes import outputs, two_processes

from experiments import backbones, pipeline, vtab
from experiments.backbones import BackboneConfig, check_weights, load_backbone
from experiments.config import (
    ExperimentConfig,
    as_assignments,
    as_dict,
    check_method_fits_backbone,
    config_changes,
    override,
    unread_on_backbone,
)
from experiments.configs import paper, preset, quickstart
from experiments.data import folder
from experiments.data.base import SplitArrays
from experiments.data.splits import split_indices
from experiments.local_files import open_npz
from experiments.methods import MethodConfig
from experiments.training import TrainResult, trainer
from experiments.training.checkpoint import CheckpointMismatchError, CheckpointUnreadableError
from experiments.training.trainer import CHECKPOINT_DIR
from experiments.vtab_table import PAPER_LR, PARTIAL_NOTE
from glora_jax.evolution import STATE_FILE, evolutionary_search

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


@pytest.fixture
def no_data_loads(monkeypatch):
    """Config errors must fail before the data loads (let alone the backbone or training)."""

    def load_splits(config):
        raise AssertionError("the data loaded before the config's error was found")

    monkeypatch.setattr(pipeline, "load_splits", load_splits)


@pytest.mark.slow
def test_glora_end_to_end_with_retrain_and_resume(tmp_path, caplog, capsys):
    workdir = tmp_path / "runs"
    argv = ["--adapter=glora", f"--workdir={workdir}", *TINY, "--set", "search.retrain=True",
            "--set", "backbone.scan=true"]  # fmt: skip
    assert vtab.main(argv) == 0
    out = workdir / "digits"
    result = json.loads((out / "result.json").read_text())
    assert result["test_accuracy"] == result["merged_test_accuracy"]
    printed = capsys.readouterr().out  # a summary of the task, not the whole result.json
    percent = f"{100 * result['test_accuracy']:.2f}%"
    assert f"digits: glora on vit-ti16-random: test {percent} (merged model {percent}" in printed
    assert f"{result['trainable_params']:,} trainable parameters" in printed
    assert f"val200 {100 * result['search']['val_accuracy']:.2f}%" in printed
    assert f"-> {out / 'result.json'}" in printed and '"stage_seconds"' not in printed
    stages = result["stage_seconds"]
    assert list(stages) == ["data", "backbone", "train", "search", "retrain", "test", "save"]
    # The retrain ran the chosen subnet on 1000 images (train800val200), 2 epochs of batch 100.
    (retrain_dir,) = (out / "retrain").iterdir()  # named by the chosen subnet's digest
    retrain = (retrain_dir / "metrics.csv").read_text().splitlines()
    steps = {int(line.split(",")[0]) for line in retrain[1:] if ",train/loss," in line}
    assert max(steps) == 2 * 1000 // 100
    assert result["test_accuracy"] > 0.1  # above chance: 10 classes
    assert 0 < result["trainable_params"] <= 200000
    # generation 0 is the random population, each later one 3 mutations + 3 crossovers
    assert result["search"]["candidates_evaluated"] == 6 + 1 * (3 + 3)
    assert result["bias_grad"] == ("gemv" if jax.default_backend() == "gpu" else "reduce")
    subnet = json.loads((out / "subnet.json").read_text())
    assert subnet["num_params"] == result["trainable_params"]
    for png in ("search_accuracy_vs_params", "search_progress", "subnet_layers", "params_per_type"):
        assert (out / "plots" / f"{png}.png").stat().st_size > 1000
    best = [line for line in (out / "search" / "metrics.csv").read_text().splitlines()
            if ",search/best_val_accuracy," in line]  # fmt: skip
    assert [int(line.split(",")[0]) for line in best] == [0, 1]
    assert float(best[-1].split(",")[2]) == subnet["score"]
    assert "train/loss" in (out / "train" / "metrics.csv").read_text()
    merged = np.load(out / "merged.npz")
    assert "head/kernel" in merged.files
    # Started again on the same workdir: training, search and retrain resume from their
    # checkpoints (nothing left to do), say so, and give the same result.
    caplog.clear()
    with caplog.at_level("INFO", logger="experiments.training.trainer"):
        assert vtab.main(argv) == 0
    assert f"resuming at step {max(steps)} from {retrain_dir}" in caplog.text
    again = json.loads((out / "result.json").read_text())
    assert again["test_accuracy"] == result["test_accuracy"]
    assert again["trainable_params"] == result["trainable_params"]
    # ... but not with settings that change what it trains: that would splice two runs
    with pytest.raises(ValueError, match=re.escape("train.epochs: 2 -> 3")):
        vtab.main([*argv, "--set", "train.epochs=3"])
    # a longer search may choose another subnet: it is retrained in a folder of its own
    assert vtab.main([*argv, "--set", "search.generations=3"]) == 0
    longer = json.loads((out / "result.json").read_text())
    assert longer["search"]["candidates_evaluated"] == result["search"]["candidates_evaluated"] + 6
    folders = set((out / "retrain").iterdir())  # the first subnet's, and the new one's if new
    assert retrain_dir in folders and len(folders) <= 2
    # a shorter one is the saved search's first generations: its subnet, its log
    assert vtab.main([*argv, "--set", "search.generations=1"]) == 0
    shorter = json.loads((out / "result.json").read_text())
    assert shorter["search"]["candidates_evaluated"] == 6
    best = [line for line in (out / "search" / "metrics.csv").read_text().splitlines()
            if ",search/best_val_accuracy," in line]  # fmt: skip
    assert [int(line.split(",")[0]) for line in best] == [0]
    assert float(best[0].split(",")[2]) == shorter["search"]["val_accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, dtype", [("flora", "float32"), ("bitfit", "float32"), ("glora", "bfloat16")]
)
def test_methods_end_to_end(tmp_path, method, dtype):
    argv = [f"--adapter={method}", f"--workdir={tmp_path}", *TINY]
    # The GLoRA run asks for the GPU's bias-gradient form (the GEMV) explicitly.
    bias_grad = "gemv" if method == "glora" else "auto"
    sets = ["--set", f"backbone.dtype={dtype}", "--set", f"backbone.bias_grad={bias_grad}"]
    limit = 500 if method == "flora" else 1000  # the flora run tests on part of the split
    sets += ["--set", f"data.test_limit={limit}"]
    assert vtab.main([*argv, *sets]) == 0
    result = json.loads((tmp_path / "digits" / "result.json").read_text())
    assert (result["num_test"], result["num_test_available"]) == (min(limit, 797), 797)
    assert result["test_limit"] == limit
    adapted, served, n = result["test_accuracy"], result["merged_test_accuracy"], result["num_test"]
    if dtype == "float32":  # apply and merge: the same arrays in f32, scored once
        assert adapted == served and result["merged_same_arrays"]
    else:  # GLoRA's apply forms its update in bf16, merge in f32: the merged model scored
        assert not result["merged_same_arrays"]
        differ = pipeline.images_apart(adapted, served, num_test=n)
        assert differ <= pipeline.merge_tolerance(n, rounded_update=True)
    assert adapted > 0.1  # above chance: 10 classes
    assert (result["search"] == {}) == (method != "glora")
    assert result["bias_grad"] == ("gemv" if method == "glora" else "reduce")  # auto: reduce


@pytest.mark.slow
def test_processes_other_than_the_first_write_none_of_the_runs_files(tmp_path, monkeypatch):
    """On several hosts every process runs the pipeline; one writes its files, atomically (the
    others rewrote config.json while a resuming process read it)."""
    for module in (pipeline, trainer, vtab):
        monkeypatch.setattr(module, "is_main_process", lambda: False)
    argv = ["--adapter=glora", f"--workdir={tmp_path}", *TINY, "--set", "search.generations=1",
            "--set", "backbone.scan=true"]  # fmt: skip
    assert vtab.main(argv) == 0
    out = tmp_path / "digits"
    assert sorted(p.name for p in out.iterdir()) == ["search", "train"]  # checkpoints only
    assert not (out / "train" / "metrics.csv").exists()
    assert not (out / "search" / "metrics.csv").exists()
    assert list(tmp_path.iterdir()) == [out]  # no vtab_table.md
    for module in (pipeline, trainer, vtab):
        monkeypatch.setattr(module, "is_main_process", lambda: True)
    assert vtab.main(argv) == 0  # process 0 resumes from the checkpoints and writes them
    written = {p.name for p in out.iterdir()}
    assert {"config.json", "merged.npz", "plots", "result.json", "subnet.json"} <= written
    # the search, finished before, is logged whole now
    assert ",search/best_val_accuracy," in (out / "search" / "metrics.csv").read_text()


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
    with pytest.raises(ValueError, match="not a VTAB-1k task.*'fashion_mnist'.*'quickstart'"):
        paper("imagenet")
    with pytest.raises(ValueError, match=r"unknown preset 'fast'; choose from \('paper', 'quick"):
        preset("fast", "digits", method="glora")  # from Python: the CLI offers only the two
    # the quickstart recipe on a VTAB-1k task reads tfds (it read "offline", which has no cifar)
    assert quickstart("cifar").data.source == "tfds"
    assert quickstart("digits").data.source == "offline"
    args = vtab.parse_args(["--preset=quickstart", "--task=cifar"])
    assert vtab.task_config(args, "cifar").data == quickstart("cifar").data


EFFICIENTNET = ["--set", "backbone.name=efficientnet-lite0", "--set", "backbone.scan=False"]


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--adapter=glora", "--set", "method.rank=4"],
         "method.rank would be ignored: glora reads method.space"),
        (["--adapter=lora", "--set", "method.space=small"],
         "method.space would be ignored: lora reads method.rank, method.alpha, method.grads"),
        (["--adapter=bitfit", "--set", "method.grads=weight"], "bitfit reads none of them"),
        (["--adapter=lora", "--set", "method.space=huge"], "unknown GLoRA space size 'huge'"),
        (["--adapter=lora", "--set", "method.rank=4", "--set", "method.grads=weight"], None),
        (["--adapter=flora", "--set", "method.name=flora", "--set", "method.tucker=nd"], None),
        (["--adapter=flora", "--set", "method.kernel_rank=3"],  # a ViT adapts no convolution
         "method.kernel_rank=3 would be ignored: the layers flora adapts in dinov2-s14 are dense"),
        (["--adapter=flora", "--set", "method.kernel_rank=1"],  # below the default too
         "method.kernel_rank=1 would be ignored: the layers flora adapts in dinov2-s14 are dense"),
        (["--adapter=flora", "--set", "method.kernel_rank=2"],  # the default, set by hand
         "method.kernel_rank=2 would be ignored: the layers flora adapts in dinov2-s14 are dense"),
        (["--adapter=flora", "--set", "method.kernel_rank=3", *EFFICIENTNET], None),
        (["--adapter=flora", "--set", "method.tucker=nd", *EFFICIENTNET],
         "method.tucker='nd' would be ignored: the layers flora adapts in efficientnet-lite0 are "
         "convolutions"),
        (["--adapter=flora", "--set", "method.tucker=matrix", *EFFICIENTNET],  # the default
         "method.tucker='matrix' would be ignored: the layers flora adapts in efficientnet-lite0 "
         "are convolutions"),
        (["--adapter=flora", "--set", "method.tucker=matrix"], None),  # a ViT's dense kernels
        (["--adapter=lora", "--set", "method.grads=activation", *EFFICIENTNET],
         "method.grads='activation' would be ignored"),
        (["--adapter=flora", "--set", "method.grads=pallas", *EFFICIENTNET],
         "method.grads='pallas' would be ignored: the layers flora adapts in efficientnet-lite0"),
        (["--adapter=lora", "--set", "method.grads=weight", *EFFICIENTNET], None),
        (["--adapter=flora", "--set", "method.grads=auto", *EFFICIENTNET], None),  # weight space
        (["--adapter=lora", "--set", "method.name=flora"],
         "--set method.name=flora disagrees with --adapter=lora"),
        (["--set", "data.task=mnist5k"], "--set data.task=mnist5k disagrees with --task=digits"),
    ],
)  # fmt: skip
def test_method_knobs_the_method_does_not_read_are_refused(argv: list[str], error: str | None):
    """--set method.rank=4 with GLoRA trained the default space without a word; a knob no layer
    of the backbone reads was refused only off its default (--set method.kernel_rank=2 on a ViT
    passed), though a method's knob set by hand is refused at its default too."""
    args = vtab.parse_args(["--task=digits", *argv])
    if error is None:
        vtab.task_config(args, "digits")
    else:
        with pytest.raises(ValueError, match=re.escape(error)):
            vtab.task_config(args, "digits")


@pytest.mark.parametrize(
    ("method", "backbone", "knobs", "error"),
    [(MethodConfig("flora"), "vit-b16", ["kernel_rank"], "method.kernel_rank=2 would be ignored"),
     (MethodConfig("flora", kernel_rank=3), "vit-b16", [], "method.kernel_rank=3 would be"),
     (MethodConfig("flora"), "vit-b16", ["rank", "tucker", "grads"], None),
     (MethodConfig("flora"), "efficientnet-lite0", ["tucker"], "method.tucker='matrix' would be"),
     (MethodConfig("flora"), "efficientnet-lite0", ["kernel_rank", "grads"], None),
     # a knob the method does not read is methods.check_knobs' to refuse, not this check's
     (MethodConfig("lora"), "vit-b16", ["kernel_rank"], None),
     (MethodConfig("glora"), "efficientnet-lite0", ["tucker", "grads"], None)],
)  # fmt: skip
def test_a_knob_no_adapted_layer_reads_is_refused_where_the_method_reads_it(
    method: MethodConfig, backbone: str, knobs: list[str], error: str | None
) -> None:
    if error is None:
        check_method_fits_backbone(method, backbone, knobs)
    else:
        with pytest.raises(ValueError, match=re.escape(error)):
            check_method_fits_backbone(method, backbone, knobs)


@pytest.mark.parametrize(
    ("sets", "scan"),
    [
        (["backbone.name=efficientnet-lite0"], False),  # the quickstart's scan is for its ViT
        (["backbone.name=efficientnet-lite0", "backbone.remat=false"], False),
        (["backbone.name=vit-s16-random", "backbone.image_size=64"], True),  # a ViT keeps it
        (["backbone.image_size=42"], True),
    ],
)
def test_the_presets_vit_options_give_way_to_a_backbone_without_blocks(
    sets: list[str], scan: bool
) -> None:
    argv = [a for s in sets for a in ("--set", s)]
    config = vtab.task_config(vtab.parse_args(argv), "fashion_mnist")
    assert (config.backbone.scan, config.backbone.remat) == (scan, False)
    assert config.backbone.name == vtab.set_values(sets).get("backbone.name", "dinov2-s14")


def test_vit_options_set_by_hand_on_a_backbone_without_blocks_are_refused() -> None:
    argv = ["--set", "backbone.name=efficientnet-lite0", "--set", "backbone.scan=true"]
    with pytest.raises(ValueError, match=r"backbone\.scan would be ignored: efficientnet-lite0"):
        vtab.task_config(vtab.parse_args(argv), "fashion_mnist")


@pytest.mark.parametrize(
    ("argv", "warning"),
    [
        (["--adapter=lora", "--set", "search.generations=3", "--set", "train.num_configs=2"],
         "search.generations, train.num_configs ignored: only glora trains a supernet"),
        (["--adapter=bitfit", "--set", "train.eval_configs=2"], "bitfit does neither"),
        (["--set", "search.generations=3", "--set", "train.num_configs=2"], None),
    ],
)  # fmt: skip
def test_supernet_knobs_of_a_method_without_one_are_warned_about(argv, warning, caplog):
    """Ignored without a word before; a warning, not an error: one --set list may serve a sweep
    over methods."""
    with caplog.at_level(logging.WARNING, logger="experiments.vtab"):
        vtab.task_config(vtab.parse_args(["--task=digits", *argv]), "digits")
    said = [r.getMessage() for r in caplog.records if r.name == "experiments.vtab"]
    if warning is None:
        assert said == []
    else:
        assert len(said) == 1 and warning in said[0]


@pytest.mark.parametrize(
    ("assignment", "want"),
    [
        ("train.optim.learning_rate=1", 1.0),  # an int where a float is due
        ("data.split_seed=None", None),
        ("data.split_seed=3", 3),
        ("search.retrain=True", True),
        ("backbone.scan=false", False),
        ("backbone.scan=TRUE", True),  # "true" / "false" in any case
        ("data.cache_dir=2026", "2026"),  # a string field takes the text, not an int
        ("data.cache_dir=1e3", "1e3"),  # ... nor the float's repr ("1000.0")
        ("data.cache_dir='1e3'", "1e3"),  # quoted: the same
        ("search.param_budget=1e6", 1_000_000),  # a whole float where an int is due
        ("search.param_budget=0.5e6", 500_000),
        ("train.epochs=2.0", 2),
    ],
)
def test_overrides_take_the_field_type(assignment: str, want: object) -> None:
    key = assignment.split("=")[0].split(".")
    node = override(quickstart(), [assignment])
    for k in key:
        node = getattr(node, k)
    assert node == want and type(node) is type(want)


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("train.epochs=abc", "'train.epochs' takes int, got 'abc'"),
        ("search.population=2.5", "'search.population' takes int, got 2.5"),
        ("search.retrain=1", "'search.retrain' takes bool, got 1"),
        ("data.task=[3]", "'data.task' takes str, got [3]"),
        ("train.epochs=True", "'train.epochs' takes int, got True"),  # a bool is no int here
        ("train.optim.learning_rate=False", "'train.optim.learning_rate' takes float, got False"),
        ("train.epochs.max=3", "cannot set 'train.epochs.max': int has no fields"),
    ],
)
def test_overrides_of_the_wrong_type_fail_naming_the_key(assignment: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        override(quickstart(), [assignment])


@pytest.mark.parametrize("version", ["3.0", "3.0.0", "'3.0'"])
def test_a_tfds_version_is_taken_as_written(version: str) -> None:
    """data.version=3.0 was parsed as the float 3.0 and refused ("takes str | None")."""
    config = override(paper("cifar"), [f"data.version={version}"])
    assert config.data.version == version.strip("'")


def test_overrides_may_space_the_key_and_value() -> None:
    config = override(
        quickstart(), [" train.epochs = 3 ", "data.test_limit= none", "data.task = digits"]
    )
    assert (config.train.epochs, config.data.test_limit, config.data.task) == (3, None, "digits")


def test_the_last_set_of_a_key_wins_also_where_it_picks_the_preset() -> None:
    """override applies a key's last --set; the source that picks the preset must be that one."""
    argv = ["--task=cifar", "--set", "data.source=npz", "--set", "data.source=tfds"]
    assert vtab.task_config(vtab.parse_args(argv), "cifar") == paper("cifar")


def test_config_changes_name_each_setting_by_its_whole_dotted_key() -> None:
    saved = as_dict(quickstart())  # as config.json holds it
    config = override(quickstart(), ["train.optim.learning_rate=1e-3", "train.epochs=3"])
    assert config_changes(saved, config) == [
        "train.epochs: 6 -> 3",
        "train.optim.learning_rate: 0.0005 -> 0.001",
    ]
    ignored = config_changes(saved, config, ignore=["train.optim.learning_rate"])
    assert ignored == ["train.epochs: 6 -> 3"]


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("data.test_limit=-5", "data.test_limit must be >= 1 or None, got -5"),  # was [:-5]
        ("data.test_limit=0", "data.test_limit must be >= 1 or None, got 0"),
        ("data.split_seed=-1", "data.split_seed must be >= 0 or None, got -1"),
        ("eval_batch_size=0", "eval_batch_size (test and search; train.eval_batch_size is"),
        ("search.configs_per_call=0", "search.configs_per_call must be >= 1, got 0"),
        ("train.optim.b1=1.0", "b1 must be in [0, 1), got 1.0"),
        ("train.optim.b2=-0.1", "b2 must be in [0, 1), got -0.1"),
        ("train.optim.learning_rate=1e-6", "min_lr 1e-05 exceeds learning_rate 1e-06"),
        ("train.optim.warmup_start_lr=1e-3", "warmup_start_lr 0.001 exceeds learning_rate"),
    ],
)
def test_settings_out_of_range_fail_when_the_config_is_built(assignment: str, message: str):
    """Each failed only after training (a batch size of 0), or not at all: a negative test limit
    dropped test images, a min_lr above the peak made the cosine schedule climb."""
    with pytest.raises(ValueError, match=re.escape(message)):
        override(quickstart(), [assignment])


def _untrained(config, backbone, method, split, workdir, *, cfg=None, eval_split=None):
    """Stands in for ``pipeline.train_on``: the untrained adapter, nothing written."""
    aparams = method.adapter.init(jax.random.key(0), backbone.params)
    return TrainResult(params=backbone.params, aparams=aparams, state=None, history={},
                       wall_time_s=0.0, num_trainable=0, eval_accuracy=None)  # fmt: skip


def test_a_restarted_run_removes_the_earlier_result_until_it_writes_its_own(tmp_path, monkeypatch):
    """A kill between a restarted run's new subnet.json / merged.npz and its result.json left
    the earlier run's result.json beside them, as if it described them."""
    out = tmp_path / "digits"
    out.mkdir()
    (out / "result.json").write_text('{"test_accuracy": 0.5}')

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "train_on", _untrained)
    monkeypatch.setattr(pipeline, "write_npz", killed)  # merged.npz: after the test stage
    with pytest.raises(KeyboardInterrupt):
        vtab.main(["--adapter=lora", f"--workdir={tmp_path}", *TINY])
    assert (out / "config.json").exists() and not (out / "result.json").exists()


@pytest.mark.parametrize(("stop_at", "where"), [(1, "before the test stage"),
                                               (2, "after the test stage")])  # fmt: skip
def test_a_sigterm_agreed_around_the_test_stage_stops_before_any_output(
    tmp_path, monkeypatch, caplog, stop_at, where
):
    """A --distributed run asks JAX's preemption sync before and after the test stage (the
    points are counted over the run: every process must ask at both); stopped at either, it
    writes none of the outputs, so a rerun tests again."""
    asked = []

    def agreed() -> bool:
        asked.append(len(asked) + 1)
        return len(asked) == stop_at

    monkeypatch.setattr(pipeline, "train_on", _untrained)
    monkeypatch.setattr(pipeline, "preempted", agreed)
    with caplog.at_level("WARNING"), pytest.raises(SystemExit) as stopped:
        vtab.main(["--adapter=lora", f"--workdir={tmp_path}", *TINY])
    assert stopped.value.code == 128 + signal.SIGTERM and asked == list(range(1, stop_at + 1))
    assert f"stopped by SIGTERM {where}" in caplog.text
    out = tmp_path / "digits"
    assert not {"result.json", "merged.npz"} & {p.name for p in out.iterdir()}
    monkeypatch.setattr(pipeline, "preempted", lambda: False)
    assert vtab.main(["--adapter=lora", f"--workdir={tmp_path}", *TINY]) == 0
    assert (out / "result.json").exists()


def test_a_run_stopped_in_training_keeps_the_earlier_result(tmp_path, monkeypatch):
    """Training writes none of the outputs result.json describes: a checkpoint that cannot be
    read (or a kill) there used to delete the finished run's result.json all the same."""
    out = tmp_path / "digits"
    out.mkdir()
    (out / "result.json").write_text('{"test_accuracy": 0.5}')

    def unreadable(*args: object, **kwargs: object) -> None:
        raise CheckpointUnreadableError("checkpoint 10 cannot be read: delete that folder")

    monkeypatch.setattr(pipeline, "train_on", unreadable)
    with pytest.raises(CheckpointUnreadableError):
        vtab.main([f"--workdir={tmp_path}", *TINY])
    assert (out / "result.json").read_text() == '{"test_accuracy": 0.5}'


def test_a_kill_while_result_json_is_written_leaves_none_torn(tmp_path, monkeypatch):
    """result.json is written whole or not at all: a kill mid-write (here, the first 10
    characters written) leaves no file that a table or a rerun's reader would half-parse.
    Training is stood in for by the untrained adapter: the test stage and the writes run."""

    write_text = pathlib.Path.write_text

    def killed_in_result_json(self: pathlib.Path, text: str, *args: object, **kw: object) -> int:
        if "result.json" not in self.name:
            return write_text(self, text, *args, **kw)  # type: ignore[arg-type]
        write_text(self, text[:10])
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "train_on", _untrained)
    monkeypatch.setattr(pathlib.Path, "write_text", killed_in_result_json)
    with pytest.raises(KeyboardInterrupt):
        vtab.main(["--adapter=lora", f"--workdir={tmp_path}", *TINY])
    out = tmp_path / "digits"
    assert (out / "merged.npz").exists()  # the run got as far as the result
    assert not [p.name for p in out.iterdir() if "result.json" in p.name]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh CPU-only Python process, its output captured as text."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "JAX_PLATFORMS": "cpu"})  # fmt: skip


def test_sigterm_unwinds_like_ctrl_c(tmp_path):
    """A preempted VM's SIGTERM ran no finally block: a checkpoint being saved was lost."""
    marker = tmp_path / "finally-ran"
    code = (
        "import os, signal, sys, time\n"
        "from experiments.command_line import exit_on_sigterm\n"
        "exit_on_sigterm()\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
        "finally:\n"
        f"    open({str(marker)!r}, 'w').close()\n"
    )
    done = run_python(code)
    assert done.returncode == 128 + signal.SIGTERM and marker.exists()


@pytest.mark.parametrize(
    ("body", "status", "stderr"),
    [
        ("raise KeyboardInterrupt", 130, "interrupted: rerun to resume\n"),
        ("os.kill(os.getpid(), signal.SIGTERM); time.sleep(30)", 143,
         "stopped by SIGTERM: rerun to resume\n"),
        ("raise ValueError('bad --set')", 1, "error: ValueError: bad --set\n"),
        ("raise FileNotFoundError('no w.npz')", 1, "error: FileNotFoundError: no w.npz\n"),
        ("from experiments.training import NonFiniteLossError\n"  # learning rate too high
         "    raise NonFiniteLossError('training loss is nan at step 2')", 1,
         "error: NonFiniteLossError: training loss is nan at step 2\n"),
        ("return 0", 0, ""),
    ],
)  # fmt: skip
def test_a_command_stops_with_a_resume_hint_or_the_error_alone(body, status, stderr):
    """Ctrl-C printed a KeyboardInterrupt traceback and neither signal said how to go on."""
    code = (
        "import logging, os, signal, time\n"
        "import orbax.checkpoint\n"
        "from experiments.command_line import run_main\n"
        "def main():\n"
        "    logging.getLogger('absl').info('Finished saving checkpoint')  # Orbax's chatter\n"
        "    logging.getLogger('jax._src.xla_bridge').info('Unable to initialize backend')\n"
        f"    {body}\n"
        "run_main(main, resume_hint='rerun to resume')\n"
    )
    done = run_python(code)
    assert (done.returncode, done.stderr) == (status, stderr)


@pytest.mark.parametrize(
    ("signal_name", "status", "stderr"),
    [("SIGTERM", 143, "stopped by SIGTERM: rerun to resume\n"),
     ("SIGINT", 130, "interrupted: rerun to resume\n")],
)  # fmt: skip
def test_a_signal_exits_with_its_status_past_a_teardown_that_would_crash(
    tmp_path, signal_name, status, stderr
):
    """A SIGTERM (or Ctrl-C) while XLA compiled left the interpreter's teardown to crash with
    SIGSEGV (exit status -11, not 143): an atexit handler that segfaults stands in for it. The
    finally blocks still run and the hint is printed."""
    marker = tmp_path / "finally-ran"
    code = (
        "import atexit, os, signal, time\n"
        "from experiments.command_line import run_main\n"
        "def main():\n"
        "    atexit.register(os.kill, os.getpid(), signal.SIGSEGV)\n"
        "    try:\n"
        f"        os.kill(os.getpid(), signal.{signal_name})\n"
        "        time.sleep(30)\n"
        "    finally:\n"
        f"        open({str(marker)!r}, 'w').close()\n"
        "run_main(main, resume_hint='rerun to resume')\n"
    )
    done = run_python(code)
    assert (done.returncode, done.stderr) == (status, stderr)
    assert marker.exists()


def test_command_logging_keeps_project_lines_and_drops_orbax_chatter():
    code = (
        "import logging\n"
        "import orbax.checkpoint  # installs a root handler of its own format\n"
        "from experiments.command_line import setup_logging\n"
        "setup_logging()\n"
        "logging.getLogger('absl').info('Finished saving checkpoint')\n"
        "logging.getLogger('absl').warning('a real problem')\n"
        "logging.getLogger('experiments.training.trainer').info('resuming at step 5')\n"
    )
    done = run_python(code)
    assert done.stderr.splitlines() == [
        "WARNING absl: a real problem",
        "INFO experiments.training.trainer: resuming at step 5",
    ]


def test_timestamped_command_logging_starts_each_line_with_the_time():
    code = (
        "import logging\n"
        "from experiments.command_line import setup_logging\n"
        "setup_logging(timestamps=True)\n"
        "logging.getLogger('experiments.suite_run').info('run a')\n"
    )
    done = run_python(code)
    line = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO experiments.suite_run: run a\n"
    assert re.fullmatch(line, done.stderr)


@pytest.mark.parametrize(
    ("batch", "num_configs", "error"),
    [
        (99, 1, "batch size 99 is not divisible by the 2 devices"),
        (12, 4, "its 3 groups of 4 examples do not split over the 2 devices"),
    ],
)
def test_a_batch_the_devices_cannot_split_is_refused_before_the_data_loads(
    tmp_path, monkeypatch, no_data_loads, batch, num_configs, error
):
    # two devices; a config.json left behind would refuse the corrected run's workdir
    mesh = jax.sharding.AbstractMesh((2,), ("data",))
    monkeypatch.setattr(pipeline, "data_mesh", lambda: mesh)
    argv = ["--adapter=glora", f"--workdir={tmp_path}", *TINY, "--set",
            f"train.batch_size={batch}", "--set", f"train.num_configs={num_configs}"]  # fmt: skip
    with pytest.raises(ValueError, match=error):
        vtab.main(argv)
    assert not list(tmp_path.rglob("config.json"))


def test_subnets_per_step_of_a_method_without_a_supernet_leave_the_batch_free(
    tmp_path, monkeypatch, no_data_loads
) -> None:
    """train.num_configs, which vtab warns a method other than glora ignores, was still checked
    against the batch: --adapter=lora with num_configs=2 and a batch of 33 was refused (glora's
    refusal: ``test_the_dry_run_refuses_what_the_run_would_before_the_data_loads``)."""
    monkeypatch.setattr(pipeline, "data_mesh", lambda: jax.sharding.AbstractMesh((1,), ("data",)))
    argv = ["--adapter=lora", f"--workdir={tmp_path}", *TINY, "--dry_run",
            "--set", "train.batch_size=33", "--set", "train.num_configs=2"]  # fmt: skip
    assert vtab.main(argv) == 0


@pytest.mark.parametrize(
    ("flags", "what"),
    [
        (["--workdir=gs://bucket/runs"], "--workdir 'gs://bucket/runs'"),
        (
            ["--task=fashion_mnist", "--data_dir=gs://bucket/tfds"],
            "data.data_dir 'gs://bucket/tfds'",
        ),
        (
            ["--checkpoint=s3://b/ViT-B_16.npz", "--set", "backbone.name=vit-b16"],
            "backbone.checkpoint 's3://b/ViT-B_16.npz'",
        ),
        (["--source=npz", "--task=gs://bucket/data.npz"], "data.task 'gs://bucket/data.npz'"),
        (["--set", "data.cache_dir=gs://bucket/cache"], "data.cache_dir 'gs://bucket/cache'"),
    ],
)
def test_a_url_for_a_path_is_refused_before_any_work(tmp_path, monkeypatch, flags, what):
    # pathlib would make gs://bucket/runs the local folder gs:/bucket/runs without a word
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=re.escape(what) + " is a URL.*mount the bucket"):
        vtab.main(["--adapter=lora", "--workdir=w", *TINY, *flags])
    assert not any(tmp_path.rglob("*"))


@pytest.mark.parametrize("flag", ["--source", "--data_dir", "--checkpoint", "--workdir"])
def test_an_empty_flag_is_refused(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--checkpoint= and --data_dir= read as not given (the default weights and data), and
    --workdir= as the working directory."""
    with pytest.raises(SystemExit):
        vtab.parse_args([f"{flag}="])
    assert f"error: {flag} is empty: give a value, or leave the flag out" in capsys.readouterr().err


def test_an_empty_path_set_is_refused_before_any_work(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^data\.cache_dir is an empty path: give one"):
        vtab.main(["--adapter=lora", "--workdir=w", *TINY, "--set", "data.cache_dir="])
    assert not any(tmp_path.rglob("*"))


def test_flags_take_either_spelling() -> None:
    """--dry-run and --data-dir as offline_suite and bench spell their flags."""
    dashed = vtab.parse_args(["--dry-run", "--data-dir=d"])
    assert dashed == vtab.parse_args(["--dry_run", "--data_dir=d"])
    assert (dashed.dry_run, dashed.data_dir) == (True, "d")


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU's refusal and devices line")
def test_cudnn_attention_off_a_gpu_is_refused_before_the_workdir_is_taken(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with pytest.raises(ValueError, match="attention='cudnn' runs on NVIDIA GPUs only.*'cpu'"):
        vtab.main([f"--workdir={tmp_path}", *TINY, "--set", "backbone.attention=cudnn",
                   "--set", "backbone.dtype=bfloat16"])  # fmt: skip
    assert not any(tmp_path.rglob("*"))
    # the run said what it computes on, with the way to refuse a quiet CPU fallback
    assert any(
        "devices: 1 x cpu (cpu backend, 1 process)" in r.message and "JAX_PLATFORMS" in r.message
        for r in caplog.records
    )


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (
            ["--tasks=fashion_mnist,mnist5kk", "--preset=quickstart"],
            "unknown offline task 'mnist5kk'",
        ),
        (["--tasks=fashion_mnist,digits", "--data_dir=/data"], "digits ships inside scikit"),
        (["--task=cifar", "--source=noah"], "source 'noah' needs data_dir"),
        (["--task=dtd", "--set", "data.split_seed=1"], "source 'tfds' has fixed splits"),
        (["--set", "data.version=3.*"], "version applies to source 'tfds' only"),
        (["--source=npz", "--task=mine.npz", "--data_dir=/data"], "takes its path as name"),
    ],
)
def test_data_options_are_checked_before_any_task_runs(tmp_path, no_data_loads, flags, error):
    """--tasks=fashion_mnist,mnist5kk failed only once fashion_mnist had run."""
    with pytest.raises(ValueError, match=re.escape(error)):
        vtab.main([f"--workdir={tmp_path}", *flags])
    assert not any(tmp_path.rglob("*"))


def test_search_settings_are_checked_before_the_data_loads(tmp_path, no_data_loads):
    # a search the evolution would refuse fails in seconds, not after the supernet trained
    with pytest.raises(ValueError, match="population must be >= top_k"):
        vtab.main(["--set", "search.top_k=100", f"--workdir={tmp_path}"])
    assert not (tmp_path / "fashion_mnist").exists()  # nothing left behind: the fixed run goes on


def test_the_command_line_reports_bad_input_without_a_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "experiments.vtab", "--set", "train.epoch=3",
         f"--workdir={tmp_path}"],
        capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("error: ValueError: unknown config key 'train.epoch'")
    )
    assert "Traceback" not in done.stderr


def test_tasks_sharing_a_results_folder_are_refused(tmp_path):
    tasks = f"{tmp_path / 'a' / 'data.npz'},{tmp_path / 'b' / 'data.npz'}"
    with pytest.raises(SystemExit, match=r"share the results folder .*data\.npz"):
        vtab.main(["--source=npz", f"--tasks={tasks}", f"--workdir={tmp_path / 'w'}"])
    with pytest.raises(SystemExit, match="share the results folder"):
        vtab.main(["--tasks=digits,digits", f"--workdir={tmp_path / 'w'}"])


@pytest.mark.parametrize(
    "flags", [["--task=digits", "--tasks=mnist5k"], ["--tasks=mnist5k", "--task=digits"]]
)
def test_task_and_tasks_together_are_refused(flags, capsys):
    """They share one destination: the last one silently won."""
    with pytest.raises(SystemExit):
        vtab.parse_args(flags)
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "error"),
    [("", "names no task: ''"), (" , ", "names no task: ' , '"),
     ("digits,", "holds an empty item (a stray comma?): 'digits,'"),
     ("digits,,mnist5k", "holds an empty item (a stray comma?): 'digits,,mnist5k'")],
)  # fmt: skip
def test_an_empty_task_list_or_item_is_refused_saying_so(value, error, capsys):
    with pytest.raises(SystemExit):
        vtab.parse_args([f"--tasks={value}"])
    assert f"error: --task/--tasks {error}" in capsys.readouterr().err


def test_task_items_are_stripped():
    assert vtab.task_names(" digits , mnist5k") == ["digits", "mnist5k"]
    assert vtab.task_names("all") == list(vtab.TASKS)


@pytest.mark.parametrize("distributed", [False, True])
def test_distributed_initializes_jax_first_and_only_when_asked(distributed, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda: calls.append("initialize"))
    monkeypatch.setattr(vtab, "devices_line", lambda: calls.append("devices") or "")
    flags = ["--distributed"] if distributed else []
    with pytest.raises(SystemExit, match="share the results folder"):  # stops before any run
        vtab.main(["--tasks=digits,digits", f"--workdir={tmp_path / 'w'}", *flags])
    assert calls == (["initialize", "devices"] if distributed else ["devices"])


def test_distributed_without_a_cluster_says_to_leave_it_off(monkeypatch):
    def no_cluster() -> None:
        raise ValueError("coordinator_address should be defined.")

    monkeypatch.setattr(jax.distributed, "initialize", no_cluster)
    with pytest.raises(ValueError, match=r"^--distributed found no cluster \(coordinator_address"):
        vtab.main(["--distributed", "--dry_run"])
    with pytest.raises(ValueError, match="on one host leave it off$"):
        vtab.main(["--distributed", "--dry_run"])


def save_a_checkpoint(folder: pathlib.Path, step: int) -> None:
    manager = ocp.CheckpointManager(folder, options=ocp.CheckpointManagerOptions(create=True))
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave({"w": np.ones(2)})))
    manager.wait_until_finished()
    manager.close()


def test_a_workdir_refuses_another_config(tmp_path):
    config = override(quickstart("digits"), ["train.epochs=2"])
    pipeline.check_same_experiment(config, tmp_path)  # a new workdir takes any config
    (tmp_path / "config.json").write_text(json.dumps(as_dict(config), default=str))
    save_a_checkpoint(tmp_path / "train" / CHECKPOINT_DIR, 4)  # what a resume would build on
    assert config.data.split_seed is None  # the default seed, 0
    resumable = ["train.log_every=1", "eval_batch_size=64", "search.generations=40",
                 "train.checkpoint_every=5", "train.keep_checkpoints=3", "train.eval_every=10",
                 "data.test_limit=500", "search.retrain=true"]  # fmt: skip
    pipeline.check_same_experiment(override(config, [*resumable, "data.split_seed=0"]), tmp_path)
    for change, named in [
        ("train.epochs=3", "train.epochs: 2 -> 3"),
        ("data.split_seed=1", "data.split_seed: 0 -> 1"),
        ("data.task=mnist5k", "data.task: 'digits' -> 'mnist5k'"),
        ("backbone.dtype=bfloat16", "backbone.dtype: 'float32' -> 'bfloat16'"),
        ("backbone.drop_path=0.1", "backbone.drop_path: 0.0 -> 0.1"),  # trains another model
        ("method.space=small", "method.space: 'medium' -> 'small'"),
    ]:
        with pytest.raises(ValueError, match=re.escape(named)):
            pipeline.check_same_experiment(override(config, [change]), tmp_path)
    # a config.json of a version without some options ran with their defaults' behaviour
    older = as_dict(config)
    del older["method"]["grads"], older["data"]["version"]
    (tmp_path / "config.json").write_text(json.dumps(older, default=str))
    pipeline.check_same_experiment(config, tmp_path)
    # ... and one made with the default seed named resumes without it
    seeded = override(config, ["data.split_seed=0"])
    (tmp_path / "config.json").write_text(json.dumps(as_dict(seeded), default=str))
    pipeline.check_same_experiment(config, tmp_path)
    # a knob the method does not read changes nothing (the quickstart set a LoRA run's space)
    lora = quickstart("digits", method="lora")
    assert lora.method.space == "large"  # the quickstart sets the space of glora only
    older = as_dict(lora)
    older["method"]["space"] = "medium"
    (tmp_path / "config.json").write_text(json.dumps(older, default=str))
    pipeline.check_same_experiment(lora, tmp_path)
    with pytest.raises(ValueError, match=re.escape("method.rank: 8 -> 4")):
        pipeline.check_same_experiment(override(lora, ["method.rank=4"]), tmp_path)


@pytest.mark.parametrize(("source", "name"), [("npz", "own.npz"), ("folder", "own")])
def test_own_data_moved_or_named_relative_resumes_its_workdir(tmp_path, monkeypatch, source, name):
    """The path of your own data was compared as a setting: the same file or folder moved (or
    named relative to the working folder) was refused its workdir. What it holds is compared by
    the training checkpoint's digest of the examples (``test_a_refused_resume_...``)."""
    config = quickstart(str(tmp_path / "a" / name), source=source)
    (tmp_path / "config.json").write_text(json.dumps(as_dict(config), default=str))
    save_a_checkpoint(tmp_path / "train" / CHECKPOINT_DIR, 4)
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "b")
    for path in (tmp_path / "b" / name, name):  # moved; the new place named relative
        pipeline.check_same_experiment(override(config, [f"data.task={path}"]), tmp_path)
    other = "folder" if source == "npz" else "npz"  # another source is other data
    with pytest.raises(ValueError, match=re.escape(f"data.source: {source!r} -> {other!r}")):
        pipeline.check_same_experiment(override(config, [f"data.source={other}"]), tmp_path)


def test_a_run_refuses_a_workdir_of_another_config_before_the_data_loads(tmp_path, no_data_loads):
    """pipeline.run itself (not only the command line) refuses, and keeps the workdir's config."""
    config = vtab.task_config(vtab.parse_args(["--adapter=lora", *TINY]), "digits")
    saved = json.dumps(as_dict(config), default=str)
    (tmp_path / "config.json").write_text(saved)
    save_a_checkpoint(tmp_path / "train" / CHECKPOINT_DIR, 4)
    with pytest.raises(ValueError, match=re.escape("train.epochs: 2 -> 3")):
        pipeline.run(override(config, ["train.epochs=3"]), tmp_path)
    assert (tmp_path / "config.json").read_text() == saved


@pytest.mark.parametrize(
    "change", ["search.param_budget=500000", "search.population=20", "train.num_configs=2"]
)
def test_a_workdir_of_a_method_without_a_supernet_resumes_with_other_supernet_settings(
    tmp_path, change: str
) -> None:
    """vtab only warns of a search.* or supernet key a method other than glora ignores (one
    --set list serves a sweep); a resume with another value of it was refused, by the workdir's
    config.json and (train.num_configs) by the training checkpoint, though nothing it ran
    changes. glora, which reads them, still refuses."""
    lora = quickstart("digits", method="lora")
    (tmp_path / "config.json").write_text(json.dumps(as_dict(lora), default=str))
    save_a_checkpoint(tmp_path / "train" / CHECKPOINT_DIR, 4)
    changed = override(lora, [change])
    pipeline.check_same_experiment(changed, tmp_path)
    settings = [
        trainer.run_settings(pipeline.train_settings(c), steps_per_epoch=25, cfg=None)
        for c in (lora, changed)
    ]
    assert settings[0] == settings[1]
    glora = quickstart("digits")
    (tmp_path / "config.json").write_text(json.dumps(as_dict(glora), default=str))
    with pytest.raises(ValueError, match=re.escape(change.partition("=")[0])):
        pipeline.check_same_experiment(override(glora, [change]), tmp_path)
    assert pipeline.train_settings(override(glora, [change])) == override(glora, [change]).train


@pytest.mark.parametrize("flags", [["--source=noah"], ["--set", "data.source=noah"]])
def test_a_data_dir_set_as_a_number_is_the_folder_of_that_name(flags: list[str]) -> None:
    """--set data.data_dir=2026 reached the preset as the int 2026 (set_values parsed it but
    did not take the field's type, as override does): a TypeError traceback from expanduser."""
    args = vtab.parse_args(["--task=cifar", *flags, "--set", "data.data_dir=2026"])
    assert vtab.task_config(args, "cifar").data.data_dir == "2026"


def files_of(folder: pathlib.Path) -> dict[str, bytes]:
    """{path under ``folder``: bytes} of every file in it."""
    return {str(f.relative_to(folder)): f.read_bytes() for f in folder.rglob("*") if f.is_file()}


@pytest.mark.slow
def test_a_refused_resume_leaves_the_workdir_as_it_was(tmp_path, caplog):
    """The checkpoint's refusal (other data under the same file name or moved; a batch size that
    a config.json missing the key could not catch) came after config.json was rewritten and
    result.json deleted: the finished results were gone and the original command refused. The
    same data moved resumes."""
    data, out = tmp_path / "own.npz", tmp_path / "run"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (1040, 16, 16, 3), dtype=np.uint8)
    np.savez(data, images=images, labels=np.arange(1040) % 4)
    argv = ["--adapter=lora", "--source=npz", f"--task={data}", "--set", "train.total_steps=2",
            "--set", "backbone.name=vit-ti16-random", "--set", "backbone.image_size=16",
            "--set", "train.batch_size=50"]  # fmt: skip
    config = vtab.task_config(vtab.parse_args(argv), str(data))
    pipeline.run(config, out)
    finished = files_of(out)
    assert {"config.json", "result.json"} <= set(finished)
    # (a) the npz rewritten, in its place or moved: the data digest differs from the checkpoint's
    moved = tmp_path / "moved" / "own.npz"
    moved.parent.mkdir()
    for path in (data, moved):
        np.savez(path, images=images, labels=(np.arange(1040) + 1) % 4)
        with pytest.raises(CheckpointMismatchError, match="the training data changed since the "
                           "checkpoint was written: .*train_data: "):  # fmt: skip
            pipeline.run(override(config, [f"data.task={path}"]), out)
        assert files_of(out) == finished
    data.unlink()
    np.savez(moved, images=images, labels=np.arange(1040) % 4)
    config = override(config, [f"data.task={moved}"])
    with caplog.at_level(logging.INFO, logger="experiments.training.trainer"):
        assert pipeline.run(config, out)["num_test"] == 40  # the original run resumes, moved
    assert "resuming at step 2 from" in caplog.text
    # (b) a config.json without train.batch_size: the checkpoint alone can tell
    saved = json.loads((out / "config.json").read_text())
    del saved["train"]["batch_size"]
    (out / "config.json").write_text(json.dumps(saved))
    before = files_of(out)
    with pytest.raises(CheckpointMismatchError, match="batch_size: 50 -> 40") as refused:
        pipeline.run(override(config, ["train.batch_size=40"]), out)
    assert "training data changed" not in str(refused.value)
    assert files_of(out) == before
    assert "result.json" in before
    assert pipeline.run(config, out)["num_test"] == 40


@pytest.mark.slow
@pytest.mark.parametrize("moved", [False, True])
def test_a_search_refuses_to_resume_on_other_val200_examples(tmp_path, monkeypatch, caplog, moved):
    """The search state recorded no digest of the val200 examples it scored its candidates on:
    own data rewritten in its val200 part alone (train800 and test as they were, which no
    training checkpoint tells apart), in its place or moved, resumed the search and ranked
    scores of the two val200s together. It is refused before the workdir changes; the same
    examples (moved) resume; a state saved before it recorded its val200 resumes with a
    warning and records it."""
    monkeypatch.setattr(pipeline, "train_on", _untrained)  # the search's data is the point
    data, out = tmp_path / "own.npz", tmp_path / "run"
    images = np.random.default_rng(0).integers(0, 256, (1040, 16, 16, 3), dtype=np.uint8)
    labels = np.arange(1040) % 4
    np.savez(data, images=images, labels=labels)
    argv = ["--adapter=glora", "--source=npz", f"--task={data}", *TINY[1:],
            "--set", "search.generations=1"]  # fmt: skip
    config = vtab.task_config(vtab.parse_args(argv), str(data))
    assert pipeline.run(config, out)["search"]["candidates_evaluated"] == 6
    state = out / "search" / STATE_FILE
    val = split_indices("val200", labels=labels, num_classes=4, seed=0)
    changed = images.copy()
    changed[val] = 255 - changed[val]  # val200 alone
    path = tmp_path / "moved" / "own.npz" if moved else data
    path.parent.mkdir(exist_ok=True)
    if moved:
        data.unlink()
    refused = (
        f"^search state in {re.escape(str(state))} scored its candidates on other data "
        r"\(data_fingerprint saved 'val200:[0-9a-f]{20}', now 'val200:[0-9a-f]{20}'\)"
    )

    def resume(generations: int, examples: np.ndarray) -> dict:
        """The run of ``generations`` on ``examples`` at ``path``, logging the search's lines."""
        np.savez(path, images=examples, labels=labels)
        caplog.clear()
        longer = override(config, [f"data.task={path}", f"search.generations={generations}"])
        with caplog.at_level(logging.INFO, logger="glora_jax.evolution"):
            return pipeline.run(longer, out)

    before = files_of(out)
    with pytest.raises(ValueError, match=refused):
        resume(2, changed)
    assert files_of(out) == before  # refused before the workdir changed
    assert resume(2, images)["search"]["candidates_evaluated"] == 12  # the examples scored on
    assert f"resuming the search after generation 1 from {state}" in caplog.text
    assert "records no data fingerprint" not in caplog.text
    # a state saved before the search recorded its val200 resumes with a warning, records it
    with np.load(state) as saved:
        arrays = {k: saved[k] for k in saved.files}
    meta = json.loads(str(arrays["meta"]))
    fingerprint = meta.pop("data_fingerprint")
    arrays["meta"] = np.asarray(json.dumps(meta))
    np.savez(state, **arrays)
    assert resume(3, images)["search"]["candidates_evaluated"] == 18
    assert "records no data fingerprint (saved by an older version, or without one)" in (
        caplog.text
    )
    with np.load(state) as saved:
        assert json.loads(str(saved["meta"]))["data_fingerprint"] == fingerprint
    with pytest.raises(ValueError, match=refused):
        resume(4, changed)


def test_a_search_state_of_another_val200_names_the_folders_to_delete(tmp_path):
    """The refusal said to delete search/evolution_state.npz alone: so done, a new search that
    picked the subnet retrained before had that retrain refused after the training and the
    search (retrain/ was trained on the old train800val200). It names search/ and retrain/,
    as the README does, and --workdir, the CLI's name for the state's folder."""
    from test_evolution import SPACE, TARGET_BUDGET, matches_target

    config = override(quickstart("digits"), [
        f"search.param_budget={TARGET_BUDGET}", "search.population=6", "search.top_k=2",
        "search.num_mutations=3", "search.num_crossovers=3", "search.generations=1",
    ])  # fmt: skip

    def splits(images: np.ndarray) -> pipeline.Splits:
        part = SplitArrays(images, np.arange(len(images), dtype=np.int32) % 2, 2, "t", "val200")
        return pipeline.Splits(part, part, part, len(images))

    old, new = splits(np.zeros((4, 2, 2, 3), np.uint8)), splits(np.ones((4, 2, 2, 3), np.uint8))
    evolutionary_search(
        SPACE, matches_target, checkpoint_dir=tmp_path / "search", progress=False,
        data_fingerprint=pipeline.search_data(old), **pipeline.search_settings(config),
    )  # fmt: skip
    pipeline.check_search(config, SPACE, tmp_path, old)
    state = tmp_path / "search" / STATE_FILE
    with pytest.raises(ValueError) as refused:
        pipeline.check_search(config, SPACE, tmp_path, new)
    assert str(refused.value) == (
        f"search state in {state} scored its candidates on other data (data_fingerprint saved "
        f"{pipeline.search_data(old)!r}, now {pipeline.search_data(new)!r}): resuming would rank "
        f"scores of two data sets together; use another --workdir, or the data it was scored "
        f"on, or delete {tmp_path / 'search'} (and {tmp_path / 'retrain'}, trained on the old "
        f"train800val200) to search the new data"
    )


def test_a_second_run_in_a_workdir_in_use_is_refused(tmp_path):
    """Two runs at once in one workdir wrote over each other's checkpoints and each failed with
    Orbax's tracebacks (or, of two configs, spliced them)."""
    out = tmp_path / "digits"
    out.mkdir()
    with pipeline.only_run_in(out):  # the first run, still going
        with pytest.raises(ValueError, match=f"^{re.escape(str(out))} is in use by another run"):
            vtab.main(["--adapter=lora", f"--workdir={tmp_path}", *TINY])
        assert not any(out.iterdir())
    with pipeline.only_run_in(out):  # ended: the folder is free
        pass


_TWO_PROCESS_RUN = textwrap.dedent("""
    import pathlib, sys
    import jax
    jax.distributed.initialize()
    from jax.experimental import multihost_utils
    from experiments import pipeline
    workdir = pathlib.Path(sys.argv[1])
    if sys.argv[2:] == ["apart"]:  # a folder of each process's own, as on hosts' own disks
        workdir = workdir / str(jax.process_index())
        workdir.mkdir()
    try:
        with pipeline.only_run_in(workdir):
            multihost_utils.sync_global_devices("run")  # the run's first collective
            print("ran")
    except ValueError as error:
        print(f"refused: {error}")
""")


def _two_process_run(workdir: pathlib.Path, *args: str) -> list[str]:
    """The last stdout line of each of two CPU processes (jax.distributed) that run in
    ``workdir`` (``_TWO_PROCESS_RUN``; ``apart``: each in its own subfolder), after checking
    that both exit 0 within 60 s."""
    with two_processes(_TWO_PROCESS_RUN, str(workdir), *args) as processes:
        done = outputs(processes, status=0)
    # stdout also holds gloo's "[Gloo] Rank 0 is connected to 1 peer ranks ..."
    return [stdout.splitlines()[-1] for stdout, _ in done]


@pytest.mark.slow
def test_every_process_of_a_second_run_in_a_workdir_in_use_is_refused(tmp_path):
    """Two processes (jax.distributed): process 0 took the lock and raised, process 1 ran on
    into the run's first collective, and both hung (process 0 at its exit, waiting for
    process 1 to leave the distributed runtime) instead of failing."""
    out = tmp_path / "digits"
    out.mkdir()
    with pipeline.only_run_in(out):  # the first run, still going
        refused = _two_process_run(out)
    in_use = f"{out} is in use by another run: wait for it to end, or use another --workdir"
    assert refused == [f"refused: {in_use}"] * 2
    assert _two_process_run(out) == ["ran", "ran"]  # ended: the folder is free
    assert not any(out.iterdir())  # the probe of a shared folder is gone


@pytest.mark.slow
def test_processes_of_a_run_on_folders_of_their_own_are_refused(tmp_path):
    """A workdir on each host's own disk (not shared): each process resumed from, and wrote,
    its own checkpoints, and a fresh run hung at its first checkpoint (Orbax's save waits for
    the folder process 0 finalises). Every process is refused before the run starts."""
    refused = _two_process_run(tmp_path, "apart")
    blind = (
        "is not one folder of every process: process(es) 1 cannot read what process 0 writes "
        "in it; give --workdir a folder all hosts share (NFS, a mounted bucket)"
    )
    assert refused == [f"refused: {tmp_path / str(i)} {blind}" for i in range(2)]
    assert [list(p.iterdir()) for p in sorted(tmp_path.iterdir())] == [[], []]


def test_a_shared_workdir_check_takes_any_token(tmp_path, monkeypatch):
    """The probe's token is broadcast as an int32: the largest 4 random bytes give still fit
    (one process runs the collectives alone here), and the probe is gone after."""
    monkeypatch.setattr(pipeline.os, "urandom", lambda n: b"\xff" * n)
    pipeline.check_shared(tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("method", "backbone", "unread"),
    [("flora", "vit-b16", ("method.kernel_rank",)), ("flora", "efficientnet-lite0",
     ("method.tucker",)), ("lora", "vit-b16", ()), ("lora", "efficientnet-lite0", ())],
)  # fmt: skip
def test_unread_on_backbone_names_only_knobs_of_the_method(method, backbone, unread):
    assert unread_on_backbone(method, backbone) == unread


_UNTRAINED_RUN = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from experiments import pipeline, vtab
    from experiments.command_line import run_main

    def untrained(*args, **kwargs):  # training stood in for: the search and test stages run
        from test_vtab_cli import _untrained  # its import starts JAX: after --distributed's

        return _untrained(*args, **kwargs)

    pipeline.train_on = untrained
    run_main(lambda: vtab.main(sys.argv[2:]), resume_hint="rerun to resume")
""")


@pytest.mark.slow
def test_a_sigterm_stops_every_process_of_a_distributed_search_where_it_resumes(
    tmp_path, monkeypatch, caplog
):
    """With --distributed, JAX's preemption service takes SIGTERM from the run's handler and
    only the training loop asked it whether to stop: a SIGTERM in the search was ignored and
    the search went on to its last generation. Every process now stops after the generation
    they agree on, its state saved (exit 143), and a rerun resumes the search there."""
    argv = ["--adapter=glora", f"--workdir={tmp_path}", *TINY]
    state = tmp_path / "digits" / "search" / STATE_FILE
    tests = str(pathlib.Path(__file__).parent)
    longer = ["--distributed", "--set", "search.generations=100000"]
    with two_processes(_UNTRAINED_RUN, tests, *argv, *longer) as processes:
        deadline = time.monotonic() + 60
        while not state.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        processes[1].send_signal(signal.SIGTERM)  # the notice reaches one host: all stop
        stopped = outputs(processes, status=128 + signal.SIGTERM)
    generation = json.loads(np.load(state)["meta"].item())["generation"]
    assert 1 <= generation < 100000
    for _, stderr in stopped:
        assert f"SIGTERM with {generation} search generations done, saved" in stderr
    monkeypatch.setattr(pipeline, "train_on", _untrained)
    with caplog.at_level("INFO", logger="glora_jax.evolution"):
        assert vtab.main([*argv, "--set", f"search.generations={generation + 1}"]) == 0
    assert f"resuming the search after generation {generation} from {state}" in caplog.text
    result = json.loads((tmp_path / "digits" / "result.json").read_text())
    assert result["search"]["candidates_evaluated"] == 6 * (generation + 1)


@pytest.mark.parametrize("text", ['{"train": ', "[1, 2]", "\udcff"])
def test_an_unreadable_config_json_is_named(tmp_path, no_data_loads, text):
    """A torn config.json failed with a bare JSONDecodeError naming no file."""
    path = tmp_path / "config.json"
    path.write_text(text, errors="surrogateescape")
    with pytest.raises(
        ValueError, match=f"^{re.escape(str(path))} (is not readable JSON|holds no)"
    ):
        pipeline.run(quickstart("digits"), tmp_path)
    assert path.read_text(errors="surrogateescape") == text


def test_a_tfds_workdir_resumes_with_its_own_config(tmp_path):
    """A fixed-split source's seed stays None: checking it rebuilt the data config with the
    seed 0, which a tfds task refuses, so every tfds workdir failed to resume."""
    config = paper("cifar")
    (tmp_path / "config.json").write_text(json.dumps(as_dict(config), default=str))
    save_a_checkpoint(tmp_path / "train" / CHECKPOINT_DIR, 4)
    pipeline.check_same_experiment(config, tmp_path)
    with pytest.raises(ValueError, match=re.escape("train.epochs: 500 -> 3")):
        pipeline.check_same_experiment(override(config, ["train.epochs=3"]), tmp_path)


@pytest.mark.parametrize("state", ["train", "retrain", "search"])
def test_a_config_json_without_saved_state_gives_way_with_a_warning(tmp_path, caplog, state):
    """A run that failed before its first checkpoint (say, out of memory at the first step) left
    config.json alone: a run with another batch size may start over there."""
    config = override(quickstart("digits"), ["train.batch_size=128"])
    (tmp_path / "config.json").write_text(json.dumps(as_dict(config), default=str))
    (tmp_path / "train" / CHECKPOINT_DIR / "7.orbax-checkpoint-tmp-1").mkdir(parents=True)
    (tmp_path / "train" / "metrics.csv").write_text("step,name,value\n")
    smaller = override(config, ["train.batch_size=64"])
    with caplog.at_level(logging.WARNING, logger="experiments.pipeline"):
        pipeline.check_same_experiment(smaller, tmp_path)
    assert "saved no checkpoint or search state" in caplog.text
    assert "train.batch_size: 128 -> 64" in caplog.text
    if state == "search":
        (tmp_path / "search").mkdir()
        (tmp_path / "search" / "evolution_state.npz").write_bytes(b"")
    else:
        run = tmp_path / ("train" if state == "train" else "retrain/ab12")
        save_a_checkpoint(run / CHECKPOINT_DIR, 3)  # where the trainer saves
    with pytest.raises(ValueError, match=re.escape("train.batch_size: 128 -> 64")):
        pipeline.check_same_experiment(smaller, tmp_path)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--task=cifar", "--set", "backbone.name=efficientnet-lite0"],
         "backbone.normalization='imagenet' is the preset's input scaling for vit-b16, not "
         "efficientnet-lite0's own"),
        (["--task=cifar", "--set", "backbone.name=vit-s16-random"], "not vit-s16-random's own"),
        (["--task=cifar", "--set", "backbone.name=efficientnet-lite0",
          "--set", "backbone.normalization=native"], None),
        (["--task=cifar", "--set", "backbone.name=efficientnet-lite0",
          "--set", "backbone.normalization=imagenet"], None),
        (["--task=cifar", "--set", "backbone.name=dinov2-s14"], None),  # its own is ImageNet's
        (["--task=cifar", "--source=noah", "--data_dir=/v", "--set", "data.source=tfds"],
         "--set data.source=tfds disagrees with --source=noah: give it once"),
        (["--task=cifar", "--data_dir=/v", "--set", "data.data_dir=/w"],
         "--set data.data_dir=/w disagrees with --data_dir=/v"),
        (["--task=cifar", "--data_dir=/v", "--set", "data.data_dir=/v"], None),
        (["--task=cifar", "--source=noah", "--set", "data.data_dir=/v"], None),
        (["--task=cifar", "--set", "data.source=noah", "--set", "data.data_dir=/v"], None),
        (["--task=mine.npz", "--set", "data.source=npz"], None),  # own data: the quickstart
        (["--task=cifar", "--checkpoint=/a.npz", "--set", "backbone.checkpoint=/b.npz"],
         "--set backbone.checkpoint=/b.npz disagrees with --checkpoint=/a.npz"),
        (["--task=digits", "--set", "train.epochs=3", "--set", "train.total_steps=10"],
         "train.epochs would be ignored: train.total_steps=10 sets the run's length"),
        (["--task=digits", "--set", "train.optim.warmup_start_lr=1e-5",
          "--set", "train.optim.warmup_epochs=0"],
         "train.optim.warmup_start_lr would be ignored: train.optim.warmup_epochs is 0"),
        (["--task=digits", "--set", "train.optim.warmup_start_lr=1e-5"], None),
    ],
)  # fmt: skip
def test_set_keys_the_run_would_ignore_or_misread_are_refused(argv, error):
    """--set backbone.name=efficientnet-lite0 on a VTAB task fed the net the paper preset's
    ImageNet mean/std inputs; --set data.source=tfds silently beat --source=noah."""
    args = vtab.parse_args(argv)
    if error is None:
        vtab.task_config(args, args.tasks)
    else:
        with pytest.raises(ValueError, match=re.escape(error)):
            vtab.task_config(args, args.tasks)


def test_table_rows_keep_other_backbones_and_cut_test_splits_apart():
    """A vit-b16 run, a DINOv2 run and a run on 1,000 of a task's test images in one workdir
    were one "lora (ours)" row beside the paper's ViT-B rows."""

    def result(task, accuracy, backbone="vit-b16", test_limit=None):
        return {"task": task, "method": "lora", "backbone": backbone, "test_limit": test_limit,
                "test_accuracy": accuracy, "trainable_params": 300_000}  # fmt: skip

    rows = vtab.table_rows({
        "cifar": result("cifar", 0.7), "dtd": result("dtd", 0.5),
        "eurosat": result("eurosat", 0.9, backbone="dinov2-s14"),
        "svhn": result("svhn", 0.8, test_limit=1000),
        "kitti": result("kitti", 0.6, test_limit=1000),  # 711 test images: none cut, same run
    })  # fmt: skip
    assert rows == {
        "lora (ours)": (0.3, {"cifar": 70.0, "dtd": 50.0}),
        "lora (ours, at most 1,000 test images)": (0.3, {"svhn": 80.0, "kitti": 60.0}),
        "lora on dinov2-s14 (ours)": (0.3, {"eurosat": 90.0}),
    }


def test_an_older_result_json_takes_its_config_jsons_test_limit(tmp_path):
    out = tmp_path / "dtd"
    out.mkdir()
    result = {"task": "dtd", "method": "lora", "backbone": "vit-b16", "test_accuracy": 0.5,
              "trainable_params": 300_000}  # fmt: skip
    (out / "result.json").write_text(json.dumps(result))
    config = override(quickstart("dtd"), ["backbone.name=vit-b16", "backbone.image_size=224"])
    (out / "config.json").write_text(json.dumps(as_dict(config), default=str))
    saved = vtab.saved_vtab_results(tmp_path)
    assert saved["dtd"]["test_limit"] == 1000
    assert list(vtab.table_rows(saved)) == ["lora (ours, at most 1,000 test images)"]
    # a result.json that records its test limit (None: the whole split) keeps its own
    (out / "result.json").write_text(json.dumps(result | {"test_limit": None}))
    saved = vtab.saved_vtab_results(tmp_path)
    assert saved["dtd"]["test_limit"] is None
    assert list(vtab.table_rows(saved)) == ["lora (ours)"]


def test_a_cut_test_split_is_warned_about(caplog, monkeypatch):
    images = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((8, 8, 3), np.uint8)
    labels = np.array([0, 1, 1, 0, 1], np.int32)
    monkeypatch.setattr(
        pipeline, "load_split", lambda config, split: SplitArrays(images, labels, 2, "t", split)
    )
    config = override(quickstart("digits"), ["data.test_limit=3"])
    with caplog.at_level(logging.WARNING, logger="experiments.pipeline"):
        splits = pipeline.load_splits(config)
    assert (len(splits.test), splits.test_available) == (3, 5)
    assert "testing on the first 3 of the task's 5 test images" in caplog.text
    np.testing.assert_array_equal(splits.test.images, images[:3])  # the first, as it says
    np.testing.assert_array_equal(splits.test.labels, labels[:3])


def test_own_data_takes_quickstart_and_writes_under_the_workdir(tmp_path, monkeypatch):
    data = tmp_path / "data" / "mine.npz"
    args = vtab.parse_args(["--source=npz", f"--task={data}"])
    config = vtab.task_config(args, str(data))
    assert (config.data.source, config.backbone.name) == ("npz", quickstart().backbone.name)
    out = vtab.task_workdir(tmp_path / "runs", str(data))
    assert out == tmp_path / "runs" / "mine.npz" and out != data
    assert vtab.task_workdir(tmp_path, "dtd") == tmp_path / "dtd"
    # a relative path names the folder it resolves to ("." gave the workdir itself)
    data.parent.mkdir()
    monkeypatch.chdir(data.parent)
    assert vtab.task_workdir(tmp_path / "runs", ".") == tmp_path / "runs" / "data"


@pytest.mark.parametrize(
    ("source", "data", "workdir"),
    [
        ("folder", "flowers", "."),  # the results folder is the data's root
        ("folder", "flowers", "flowers"),  # ... a new class folder in it
        ("npz", "d.npz", "."),  # ... the npz file
    ],
)
def test_a_workdir_in_its_own_data_is_refused(tmp_path, no_data_loads, source, data, workdir):
    """Results written into a folder task's root were read back as a class folder ("train",
    holding checkpoints) when the run resumed."""
    (tmp_path / "flowers" / "ant").mkdir(parents=True)
    (tmp_path / "d.npz").write_bytes(b"")
    before = sorted(tmp_path.rglob("*"))
    task, out = tmp_path / data, tmp_path / workdir
    with pytest.raises(ValueError, match=f"workdir {re.escape(str(out / data))} would put the "
                       "run's results in its data .*: give a --workdir outside it"):  # fmt: skip
        vtab.main([f"--source={source}", f"--task={task}", f"--workdir={out}", *TINY[1:]])
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"name": "vit-ti16-random", "image_size": 24},
         r"image_size 24 is no multiple of vit-ti16-random's 16-pixel patches \(e.g. 16\)"),
        ({"name": "dinov2-s14", "image_size": 32}, r"14-pixel patches \(e.g. 28\)"),
        ({"name": "vit-ti16-random", "image_size": 8}, r"16-pixel patches \(e.g. 16\)"),
        ({"name": "vit-ti16-random", "image_size": 0}, "image_size must be an int >= 1, got 0"),
        ({"name": "vit-ti16-random", "dtype": "float16"},
         r"unknown dtype 'float16'; choose from \['bfloat16', 'float32'\]"),
        ({"name": "vit-b16-random", "drop_path": 1.5}, r"drop_path_rate must be in \[0, 1\)"),
        ({"name": "efficientnet-lite0", "drop_path": -0.1}, r"drop_path_rate must be in \[0, 1\)"),
        ({"name": "vit-b16-random", "attention": "flash"}, "attn_implementation must be None"),
        ({"name": "vit-b16-random", "attention": "cudnn"},
         "backbone.attention='cudnn' needs backbone.dtype='bfloat16'"),
        ({"name": "efficientnet-lite0", "scan": True, "attention": "xla"},
         "backbone.scan, backbone.attention would be ignored: efficientnet-lite0 has no"),
        ({"name": "efficientnet-lite0", "remat": True, "remat_policy": "dots_saveable"},
         "backbone.remat, backbone.remat_policy would be ignored: efficientnet-lite0 has no"),
        ({"name": "vit-b16-random", "remat_policy": "dots_saveable"},
         "remat_policy 'dots_saveable' would be ignored: it needs remat=True"),
    ],
)  # fmt: skip
def test_backbone_options_are_checked_with_the_config(options, error):
    with pytest.raises(ValueError, match=error):
        BackboneConfig(**options)
    assert BackboneConfig(name="efficientnet-lite0", image_size=24).image_size == 24  # any size


def test_a_checkpoint_that_cannot_apply_is_refused(tmp_path):
    with pytest.raises(ValueError, match="starts from random weights"):
        BackboneConfig(name="vit-ti16-random", checkpoint=str(tmp_path / "w.npz"))
    for name in ("efficientnet-lite0", "dinov2-s14"):
        config = BackboneConfig(name=name, image_size=28, checkpoint=str(tmp_path / "x.npz"))
        with pytest.raises(FileNotFoundError, match=f"no {name} checkpoint at .*x.npz"):
            load_backbone(config, num_classes=3)
        folder = BackboneConfig(name=name, image_size=28, checkpoint=str(tmp_path))
        at = re.escape(str(tmp_path))
        with pytest.raises(FileNotFoundError, match=f"no {name} checkpoint at {at}$"):
            check_weights(folder)  # a folder is no checkpoint file


def test_a_given_checkpoint_is_read_instead_of_the_weights_cache(tmp_path, monkeypatch):
    read = []

    def load_dinov2_s14(*, npz_path, **options):
        read.append(npz_path)
        return None, {}

    monkeypatch.setattr(backbones, "load_dinov2_s14", load_dinov2_s14)
    monkeypatch.setattr(backbones, "cached", lambda name: tmp_path / "cache" / f"{name}.npz")
    checkpoint = tmp_path / "dinov2.npz"
    checkpoint.touch()
    load_backbone(BackboneConfig(image_size=28, checkpoint=str(checkpoint)), num_classes=3)
    load_backbone(BackboneConfig(image_size=28), num_classes=3)
    assert read == [checkpoint, tmp_path / "cache" / "dinov2-s14.npz"]


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--set", "backbone.name=vit-b16"], "vit-b16 needs the ImageNet-21k checkpoint"),
        (["--checkpoint=/nowhere/ViT-B_16.npz", "--set", "backbone.name=vit-b16"],
         "no vit-b16 checkpoint at /nowhere/ViT-B_16.npz"),
        (["--tasks=digits,nosuch"], "'nosuch' is not a VTAB-1k task"),  # before digits runs
        # a file that is there (its missing data would be named first; it is never read)
        (["--source=npz", f"--tasks={__file__},gs://b/c.npz"], "data.task 'gs://b/c.npz'"),
        (["--adapter=lora", "--set", "method.rank=0"], "LoRA rank must be an int >= 1, got 0"),
        (["--adapter=flora", "--set", "method.tucker=cp"], "tucker must be one of"),
        (["--set", "backbone.image_size=24"], "image_size 24 is no multiple"),
    ],
)  # fmt: skip
def test_config_errors_fail_before_the_data_loads(tmp_path, no_data_loads, flags, error):
    tiny = [f for f in TINY if f != "--task=digits"] if "--tasks" in str(flags) else TINY
    with pytest.raises((ValueError, FileNotFoundError, SystemExit), match=error):
        vtab.main([f"--workdir={tmp_path}", *tiny, *flags])
    assert not any(tmp_path.rglob("*"))


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--set", "search.mutation_prob=1.5"], "mutation_prob must be in [0, 1]"),
        (["--set", "train.batch_size=33", "--set", "train.num_configs=2"],
         "batch size 33 is not divisible by num_configs 2"),
        (["--set", "data.cache_dir={file}"], "data.cache_dir {file} is a file: give a folder"),
        (["--workdir={file}"], "workdir {file}/digits lies under the file {file}: give a folder's"),
    ],
)  # fmt: skip
def test_the_dry_run_refuses_what_the_run_would_before_the_data_loads(
    tmp_path, no_data_loads, flags, error
):
    file = tmp_path / "file"
    file.write_text("")
    flags = [f"--workdir={tmp_path / 'w'}", *TINY, *(f.format(file=file) for f in flags)]
    for dry_run in (["--dry_run"], []):
        with pytest.raises(ValueError, match=re.escape(error.format(file=file))):
            vtab.main([*flags, *dry_run])
    assert sorted(tmp_path.iterdir()) == [file]


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--adapter=lora", "--set", "train.head_pattern=.*"],
         r"takes in leaves the adapter rewrites \(Transformer/"),
        (["--adapter=lora", "--set", "train.head_pattern=Transformer/encoder_norm/.*"],
         "leaves out the new classifier's"),
        (["--adapter=lora", "--set", "train.head_pattern=classifier/.*"],  # matches nothing
         r"head_pattern 'classifier/\.\*' leaves out the new classifier's \['head/bias'"),
        (["--adapter=glora", "--set", "search.param_budget=10"],
         "only 0 of 6 random configs drawn in 250 tries fit param_budget=10"),
        (["--adapter=lora", "--set", "method.rank=1000"],
         r"LoRA rank 1000 exceeds min\(fan_in, fan_out\) = 192"),
        (["--adapter=lora", "--set", "train.batch_size=900"],
         "train.batch_size 900 is more than the task's 800 training examples"),
    ],
)  # fmt: skip
def test_errors_of_the_data_or_params_fail_before_the_workdir_is_taken(tmp_path, flags, error):
    with pytest.raises(ValueError, match=error):
        vtab.main([f"--workdir={tmp_path}", *TINY, *flags])
    # no config.json: the corrected run may use the same workdir (nothing trained)
    assert not any(tmp_path.rglob("config.json"))


def test_the_retrain_split_loads_with_the_others(monkeypatch):
    loaded = []

    def load_split(config, split):
        loaded.append(split)
        images = np.zeros((300, 2, 2, 3), np.uint8)
        return SplitArrays(images, np.zeros(300, np.int32), 2, config.data.task, split)

    monkeypatch.setattr(pipeline, "load_split", load_split)
    for adapter, retrain, wanted in [("glora", True, True), ("glora", False, False),
                                     ("lora", True, False)]:  # fmt: skip
        args = vtab.parse_args(
            [f"--adapter={adapter}", *TINY, "--set", f"search.retrain={retrain}"]
        )
        loaded.clear()
        splits = pipeline.load_splits(vtab.task_config(args, "digits"))
        assert ("train800val200" in loaded) == wanted == (splits.retrain is not None)
        assert {"train800", "val200", "test"} <= set(loaded)


def test_missing_vtab_data_and_checkpoint_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="tfds build|download|prepare"):
        vtab.main(["--task=dtd", f"--data_dir={tmp_path}", f"--workdir={tmp_path}/w"])
    with pytest.raises(FileNotFoundError, match="ViT-B_16.npz"):
        vtab.main(
            ["--task=digits", "--preset=quickstart", "--set", "backbone.name=vit-b16",
             "--set", "backbone.image_size=64", f"--workdir={tmp_path}/w2"]
        )  # fmt: skip


def test_a_tfds_task_without_tensorflow_datasets_says_what_to_install(tmp_path, monkeypatch):
    """It was a ModuleNotFoundError traceback (call 168: the GPU machine has no tfds)."""
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # its import now fails
    message = r"source 'tfds' needs tensorflow-datasets.*pip install.*--source=noah"
    with pytest.raises(ValueError, match=message):
        vtab.main(["--task=dtd", f"--data_dir={tmp_path}", f"--workdir={tmp_path}/w"])
    assert not (tmp_path / "w").exists()


def write_noah_task(root, task: str, num_classes: int, sizes: dict[str, int], seed: int) -> None:
    """NOAH's vtab-1k layout with random 16x16 JPEGs: <root>/<task>/<split>.txt + images."""
    rng = np.random.default_rng(seed)
    folder = root / task / "images"
    folder.mkdir(parents=True)
    for split, n in sizes.items():
        lines = []
        for i in range(n):
            label = i % num_classes
            pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            pixels[:, :, label % 3] = 25 * label  # a learnable cue
            Image.fromarray(pixels).save(folder / f"{split}_{i}.jpg")
            lines.append(f"images/{split}_{i}.jpg {label}")
        (root / task / f"{split}.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_several_vtab_tasks_from_noah_layout_write_the_table(tmp_path):
    root = tmp_path / "vtab-1k"
    sizes = {"train800": 100, "val200": 20, "train800val200": 120, "test": 30}
    write_noah_task(root, "eurosat", 10, sizes, seed=0)
    write_noah_task(root, "patch_camelyon", 2, sizes, seed=1)
    tiny = [a for a in TINY if a != "--task=digits"]
    argv = [
        "--adapter=lora",
        "--tasks=eurosat,patch_camelyon",
        "--source=noah",
        f"--data_dir={root}",
        "--preset=quickstart",
        f"--workdir={tmp_path / 'runs'}",
        *tiny,
    ]
    assert vtab.main(argv) == 0
    table = (tmp_path / "runs" / "vtab_table.md").read_text().splitlines()
    ours = next(  # the quickstart's test limit (these splits hold fewer)
        line for line in table
        if line.startswith("| lora on vit-ti16-random (ours, at most 1,000 test images)")
    )  # fmt: skip
    cells = [c.strip() for c in ours.strip("|").split("|")]
    results = {t: json.loads((tmp_path / "runs" / t / "result.json").read_text())
               for t in ("eurosat", "patch_camelyon")}  # fmt: skip
    # Columns: method, params, 19 tasks (Camelyon is 8th, EuroSAT 9th), 3 groups, average.
    assert cells[2 + 7] == f"{100 * results['patch_camelyon']['test_accuracy']:.1f}"
    assert cells[2 + 8] == f"{100 * results['eurosat']['test_accuracy']:.1f}"
    assert cells[2] == "-" and cells[-2] == "-"  # no natural / structured tasks were run
    assert any(line.startswith("| GLoRA 0.86M (paper)") for line in table)


def test_backbone_input_normalization_is_a_setting():

    images = np.full((1, 16, 16, 3), 255, np.uint8)
    native = load_backbone(BackboneConfig(name="vit-ti16-random", image_size=16), num_classes=3)
    np.testing.assert_allclose(native.scale_input(images), 1.0)  # ViT checkpoints: [-1, 1]
    imagenet = load_backbone(
        BackboneConfig(name="vit-ti16-random", image_size=16, normalization="imagenet"),
        num_classes=3,
    )
    expected = (1.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(imagenet.scale_input(images)[0, 0, 0], expected, rtol=1e-6)
    assert paper("dtd").backbone.normalization == "imagenet"  # as the GLoRA paper's inputs
    with pytest.raises(ValueError, match="unknown normalization"):
        BackboneConfig(normalization="zscore")


def test_stage_clock_times_each_stage_from_the_last_lap_after_waiting_for_its_outputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [10.0]
    waited: list[object] = []
    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: now[0])

    def wait(outputs: object) -> object:  # the device is done with any outputs 2 s later
        waited.append(outputs)
        now[0] += 0.0 if outputs is None else 2.0
        return outputs

    monkeypatch.setattr(pipeline.jax, "block_until_ready", wait)
    clock = pipeline.StageClock()
    now[0] = 13.0
    clock.lap("data")
    now[0] = 14.5
    clock.lap("train", "params")
    assert clock.seconds == {"data": 3.0, "train": 3.5}  # 1.5 s of host time + 2 s of waiting
    assert waited == [None, "params"]


@pytest.mark.slow
def test_a_merge_that_disagrees_with_the_adapted_model_fails_the_run(tmp_path, monkeypatch):
    # The test stage scores the adapted model (apply) against the plain backbone on the merged
    # arrays: a merge that drops the adapter's update (the trained head kept) changes
    # the predictions, and the run stops before it writes merged.npz.
    build = pipeline.build_method

    def dropping_merge(config, **kw):
        method = build(config, **kw)
        apply = method.adapter.apply

        def merge(params, aparams, cfg=None):
            return apply(params, jax.tree.map(jnp.zeros_like, aparams), cfg)

        return dataclasses.replace(method, adapter=method.adapter._replace(merge=merge))

    monkeypatch.setattr(pipeline, "build_method", dropping_merge)
    argv = ["--adapter=lora", f"--workdir={tmp_path}", *TINY, "--set", "method.rank=4",
            "--set", "train.optim.learning_rate=3e-2"]  # fmt: skip
    with pytest.raises(AssertionError, match="test predictions differ"):
        vtab.main(argv)
    assert not (tmp_path / "digits" / "merged.npz").exists()


@pytest.mark.parametrize(
    ("adapted", "served", "num_test", "rounded"),
    [(0.0097, 0.0096, 10_000, False), (0.5, 0.501, 10_000, False), (0.5, 0.5, 50, False),
     (0.5, 0.52, 50, False), (0.75, 0.7475, 797, True), (0.5, 0.51, 10_000, True)],
)  # fmt: skip
def test_merged_check_tolerates_flipped_near_ties(
    adapted: float, served: float, num_test: int, rounded: bool
) -> None:
    # (0.0097, 0.0096): call 51's whole task on the H200, one image of 10,000 flipped, which the
    # float comparison it replaced rejected (0.0097 - 0.0096 > 1 / 10000 in float64).
    # (0.75, 0.7475, 797): the tiny GLoRA bf16 run, 2 images flipped (update rounded in bf16).
    pipeline.check_merged_agrees(adapted, served, num_test=num_test, rounded_update=rounded)


@pytest.mark.parametrize(
    "config",
    [paper("cifar", method="flora"),
     override(quickstart("digits", method="lora"), ["method.alpha=16.0", "data.split_seed=3"]),
     override(quickstart("digits"), ["data.source=npz", "train.optim.clip_grad_norm=1.0"])],
)  # fmt: skip
def test_settings_as_assignments_rebuild_the_config(config: ExperimentConfig) -> None:
    """Every line --dry_run prints, given back to --set on another preset, makes the same run."""
    if config.data.source == "npz":  # strings that would not parse back as themselves
        data = dataclasses.replace(config.data, task=" my 1e-3.npz")
        train = dataclasses.replace(config.train, head_pattern="None")
        config = dataclasses.replace(config, data=data, train=train)
    lines = as_assignments(config)
    assert override(paper("dtd", method="ssf"), lines) == config


def test_dry_run_prints_the_settings_the_method_reads_and_runs_nothing(tmp_path, capsys):
    workdir = tmp_path / "w"
    argv = ["--task=digits", "--adapter=lora", f"--workdir={workdir}", "--dry_run"]
    assert vtab.main([*argv, "--set", "train.epochs=2"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"== digits: lora on dinov2-s14 -> {workdir / 'digits'}"
    settings = [line.strip() for line in printed[1:-1]]
    assert "train.epochs=2" in settings and "method.rank=8" in settings
    assert not [k for k in settings if k.startswith(("search.", "method.space", "train.num_"))]
    assert printed[-1] == "  (16 settings lora does not read left out)"
    config = vtab.task_config(vtab.parse_args([*argv, "--set", "train.epochs=2"]), "digits")
    assert override(quickstart("digits", method="lora"), settings) == config
    assert not workdir.exists()  # nothing ran
    # a workdir of another config is refused as the run would refuse it
    (workdir / "digits" / "train" / CHECKPOINT_DIR).mkdir(parents=True)
    (workdir / "digits" / "config.json").write_text(json.dumps(as_dict(config), default=str))
    save_a_checkpoint(workdir / "digits" / "train" / CHECKPOINT_DIR, 4)
    with pytest.raises(ValueError, match=re.escape("train.epochs: 2 -> 3")):
        vtab.main([*argv, "--set", "train.epochs=3"])


def test_paths_starting_with_a_tilde_name_the_home_folder(tmp_path, monkeypatch, capsys):
    """bash expands ~ in ``--flag ~/x`` but not in ``--flag=~/x``: the run looked for a folder
    named '~' (the data was not found, or results went to ./~/)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mine.npz", images=rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8),
             labels=np.arange(40) % 2)  # fmt: skip
    argv = ["--source=npz", "--task=~/mine.npz", "--workdir=~/runs", "--checkpoint=~/w.npz",
            "--set", "data.cache_dir=~/cache", "--set", "backbone.checkpoint=~/w.npz"]  # fmt: skip
    config = vtab.task_config(vtab.parse_args(argv), "~/mine.npz")
    assert config.data.task == str(tmp_path / "mine.npz")
    assert config.data.cache_dir == str(tmp_path / "cache")
    assert config.backbone.checkpoint == str(tmp_path / "w.npz")
    tfds = ["--task=cifar", "--data_dir=~/tfds", "--set", "data.data_dir=~/tfds"]
    assert vtab.task_config(vtab.parse_args(tfds), "cifar").data.data_dir == str(tmp_path / "tfds")
    assert vtab.main(["--source=npz", "--task=~/mine.npz", "--workdir=~/runs", "--dry_run"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.endswith(f"-> {tmp_path / 'runs' / 'mine.npz'}"), header
    assert vtab.task_workdir(tmp_path / "runs", "~/") == tmp_path / "runs" / tmp_path.name
    # the API too: a workdir in its own data is refused with ~ as without
    (tmp_path / "data" / "class_a").mkdir(parents=True)
    folder = override(quickstart(), ["data.source=folder", f"data.task={tmp_path / 'data'}"])
    with pytest.raises(ValueError, match="would put the run's results in its data"):
        pipeline.check_runs_here(folder, "~/data/runs")


def test_dry_run_of_glora_prints_its_supernet_and_search_settings(tmp_path, capsys):
    argv = ["--task=digits", "--adapter=glora", f"--workdir={tmp_path / 'w'}", "--dry_run"]
    assert vtab.main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    settings = [line.strip() for line in printed[1:-1]]
    assert "search.param_budget=300000" in settings and "train.num_configs=1" in settings
    unread = {"alpha", "grads", "kernel_rank", "rank", "scale", "tucker"}  # LoRA / FLoRA knobs
    assert not [line for line in settings if line.split("=")[0].split(".")[-1] in unread]
    assert printed[-1] == f"  ({len(unread)} settings glora does not read left out)"
    assert override(ExperimentConfig(), settings) == quickstart("digits")


@pytest.mark.parametrize(
    ("sets", "left_out"),
    [([], "method.kernel_rank"), (EFFICIENTNET + ["--set", "backbone.normalization=native"],
                                  "method.tucker")],
)  # fmt: skip
def test_a_dry_runs_settings_given_back_as_set_run_the_same_config(
    tmp_path, capsys, sets, left_out
):
    """flora's dry run on a ViT printed method.kernel_rank=2, which --set refuses (no adapted
    layer reads it): its printed settings, given back, failed to run."""
    argv = ["--task=digits", "--adapter=flora", f"--workdir={tmp_path / 'w'}", *sets]
    assert vtab.main([*argv, "--dry_run"]) == 0
    printed = [line.strip() for line in capsys.readouterr().out.splitlines()[1:-1]]
    assert not [line for line in printed if line.startswith(f"{left_out}=")]
    again = [a for line in printed for a in ("--set", line)]
    args = vtab.parse_args(["--task=digits", "--adapter=flora", *again])
    assert vtab.task_config(args, "digits") == vtab.task_config(vtab.parse_args(argv), "digits")


def test_training_checkpoints_hold_the_method_and_backbone_settings() -> None:
    config = override(quickstart(method="lora"), ["method.alpha=16.0"])
    settings = pipeline.checkpointed_settings(config)
    assert settings["method.alpha"] == 16.0 and settings["backbone.name"] == "dinov2-s14"
    assert "method.space" not in settings and "method.scale" not in settings  # lora reads neither
    assert not any(k.startswith(("train.", "data.", "search.")) for k in settings)  # the trainer's
    assert not set(settings) & pipeline.RESUMABLE_KEYS  # method.grads, backbone.attention, ...


@pytest.mark.parametrize(
    ("adapted", "served", "num_test", "differ", "rounded"),
    [(0.5, 0.5011, 10_000, 11, False), (0.5, 0.54, 50, 2, False), (0.9, 0.1, 1000, 800, False),
     (0.5, 0.5101, 10_000, 101, True), (0.75, 0.7525, 797, 2, False)],
)  # fmt: skip
def test_merged_check_rejects_real_disagreement(
    adapted: float, served: float, num_test: int, differ: int, rounded: bool
) -> None:
    with pytest.raises(AssertionError, match=f"{differ} of {num_test} test predictions differ"):
        pipeline.check_merged_agrees(adapted, served, num_test=num_test, rounded_update=rounded)


def test_rounds_update_compares_leaf_dtypes() -> None:
    f32 = {"a": jnp.zeros(2), "b": {"k": jnp.zeros((2, 2))}}
    bf16 = {"a": jnp.zeros(2), "b": {"k": jnp.zeros((2, 2), jnp.bfloat16)}}
    assert pipeline.rounds_update(bf16, f32) and not pipeline.rounds_update(f32, f32)
    with pytest.raises(ValueError, match="adapted and merged params differ in structure"):
        pipeline.rounds_update({"a": jnp.zeros(2)}, f32)


def test_same_arrays_compares_dtypes_and_every_value() -> None:
    f32 = {"a": jnp.zeros(2), "b": {"k": jnp.zeros((2, 2))}}
    assert pipeline.same_arrays(f32, jax.tree.map(jnp.copy, f32))
    assert not pipeline.same_arrays(f32, {"a": jnp.zeros(2), "b": {"k": jnp.eye(2)}})
    assert not pipeline.same_arrays(f32, jax.tree.map(lambda x: x.astype(jnp.bfloat16), f32))


def test_a_small_test_split_is_warned_about(tmp_path, caplog, monkeypatch):
    images = np.random.default_rng(0).integers(0, 255, (1004, 8, 8, 3), np.uint8)
    np.savez(tmp_path / "small.npz", images=images, labels=np.arange(1004) % 2)
    config = override(quickstart(), ["data.source=npz", f"data.task={tmp_path / 'small.npz'}"])
    reads = []
    monkeypatch.setattr(folder, "open_npz", lambda p: reads.append(p) or open_npz(p))
    with caplog.at_level("WARNING", logger="experiments.pipeline"):
        splits = pipeline.load_splits(config)
    assert len(splits.test) == 4
    assert len(reads) == 1  # the task's npz is read once for all its splits
    assert (
        "the test split holds 4 images: its accuracy moves in steps of 25.0 points" in caplog.text
    )


@pytest.mark.slow
def test_a_folder_task_records_its_class_names(tmp_path):
    """result.json names each label's class folder: the merged model's outputs are indices."""
    rng = np.random.default_rng(0)
    for index in range(1050):
        folder = tmp_path / "data" / ("zebra", "ant", "moth")[index % 3]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (16, 16, 3), np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:04d}.png")
    argv = ["--adapter=bitfit", f"--workdir={tmp_path / 'runs'}", "--source=folder",
            f"--task={tmp_path / 'data'}", *TINY[1:]]  # fmt: skip
    assert vtab.main(argv) == 0
    result = json.loads((tmp_path / "runs" / "data" / "result.json").read_text())
    assert result["class_names"] == ["ant", "moth", "zebra"]  # label i: the i-th folder by name


def test_a_vtab_task_run_beside_an_offline_task_writes_the_table(tmp_path, monkeypatch):
    def fake_run(config, out):  # writes result.json as pipeline.run does
        result = {"task": config.data.task, "method": "lora", "backbone": config.backbone.name,
                  "test_accuracy": 0.5, "merged_test_accuracy": 0.5, "num_test": 1000,
                  "trainable_params": 300_000, "head_params": 7_690, "search": {},
                  "stage_seconds": {"train": 1.0}, "wall_seconds": 1.0}  # fmt: skip
        out.mkdir(parents=True)
        (out / pipeline.RESULT_NAME).write_text(json.dumps(result))
        return result

    monkeypatch.setattr(pipeline, "run", fake_run)
    monkeypatch.setattr(pipeline, "check_available", lambda *args, **kwargs: None)  # no data here
    argv = ["--tasks=dtd,digits", "--adapter=lora", "--preset=quickstart", f"--workdir={tmp_path}"]
    assert vtab.main(argv) == 0
    (row,) = [line for line in (tmp_path / "vtab_table.md").read_text().splitlines()
              if line.startswith("| lora")]  # fmt: skip
    cells = [c.strip() for c in row.strip("|").split("|")]
    dtd = 2 + vtab.TASKS.index("dtd")  # columns: method, params, the 19 tasks, ...
    assert cells[0] == "lora on dinov2-s14 (ours)"
    tasks = cells[2 : 2 + len(vtab.TASKS)]  # digits is none of them: only dtd has a number
    assert tasks == ["50.0" if i == dtd - 2 else "-" for i in range(len(vtab.TASKS))]


def test_vtab_table_keeps_the_tasks_of_earlier_commands(tmp_path, monkeypatch):
    """Tasks run one command at a time into one workdir: the table holds every finished one,
    a row per method, and marks group means over only some of a group's tasks."""
    accuracy = {"dtd": 0.5, "cifar": 0.7, "eurosat": 0.9}

    def fake_run(config, out):  # writes result.json as pipeline.run does
        method = config.method.name
        result = {"task": config.data.task, "method": method, "backbone": config.backbone.name,
                  "test_accuracy": accuracy[config.data.task],
                  "merged_test_accuracy": accuracy[config.data.task], "num_test": 1000,
                  "trainable_params": 300_000 if method == "lora" else 500_000,
                  "head_params": 7_690, "search": {}, "stage_seconds": {"train": 1.0},
                  "wall_seconds": 1.0}  # fmt: skip
        out.mkdir(parents=True)
        (out / pipeline.RESULT_NAME).write_text(json.dumps(result))
        return result

    monkeypatch.setattr(pipeline, "run", fake_run)
    monkeypatch.setattr(pipeline, "check_available", lambda *args, **kwargs: None)  # no data here
    checkpoint = tmp_path / "ViT-B_16.npz"  # the paper's backbone: checked before any task runs
    checkpoint.touch()
    flags = [f"--workdir={tmp_path}", "--source=noah", f"--data_dir={tmp_path / 'vtab-1k'}",
             f"--checkpoint={checkpoint}"]  # fmt: skip
    for argv in (["--task=dtd"], ["--task=cifar"], ["--task=eurosat", "--adapter=flora"]):
        adapter = [] if "--adapter=flora" in argv else ["--adapter=lora"]
        assert vtab.main([*argv, *adapter, *flags]) == 0
    table = (tmp_path / "vtab_table.md").read_text().splitlines()
    rows = {line.split(" | ")[0].lstrip("| "): line.strip("|").split("|") for line in table
            if "(ours)" in line}  # fmt: skip
    assert list(rows) == ["flora (ours)", "lora (ours)"]
    lora = [c.strip() for c in rows["lora (ours)"]]
    assert lora[1] == "0.30" and (lora[2], lora[4]) == ("70.0", "50.0")  # CIFAR-100, DTD
    assert lora[2 + 19] == "60.0*" and lora[-1] == "60.0*" and lora[-3] == "-"  # partial means
    flora = [c.strip() for c in rows["flora (ours)"]]
    assert flora[1] == "0.50" and flora[2 + 8] == "90.0" and flora[2] == "-"  # EuroSAT only
    assert PARTIAL_NOTE in table


def test_table_rows_average_parameters_over_the_group_means_as_the_paper_does():
    """The GLoRA paper's table 1: "Average accuracy and # params are averaged over group-wise
    mean values". A searched subnet's size differs per task: 2M on the 7 natural tasks, 0.2M
    on the other 12 is (2 + 0.2 + 0.2) / 3 = 0.8M, not the 19-task mean (0.863M)."""
    from experiments.vtab_table import GROUPS

    params = {t: 2_000_000 if g == "natural" else 200_000 for g, ts in GROUPS.items() for t in ts}
    results = {
        t: {"task": t, "method": "glora", "backbone": "vit-b16", "test_limit": None,
            "test_accuracy": 0.5, "trainable_params": p}
        for t, p in params.items()
    }  # fmt: skip
    ((name, (params_m, _)),) = vtab.table_rows(results).items()
    per_group = [np.mean([params[t] for t in ts]) for ts in GROUPS.values()]
    assert name == "glora (ours)"
    assert params_m == pytest.approx(np.mean(per_group) / 1e6) and params_m == pytest.approx(0.8)
    # a partial row: the means of the groups that were run
    partial = {t: results[t] for t in ("cifar", "dtd", "eurosat")}
    assert vtab.table_rows(partial)["glora (ours)"][0] == pytest.approx((2.0 + 0.2) / 2)


def test_own_data_named_as_a_vtab_task_stays_out_of_the_vtab_table(tmp_path, monkeypatch):
    """A folder of your own classes named "dtd" (--source=folder) put its accuracy in the
    VTAB-1k table's DTD column, in its own command's table and in every later one."""

    def fake_run(config, out):  # writes config.json and result.json as pipeline.run does
        result = {"task": config.data.task, "method": "lora", "backbone": config.backbone.name,
                  "test_accuracy": 0.25, "merged_test_accuracy": 0.25, "num_test": 1000,
                  "trainable_params": 300_000, "head_params": 7_690, "search": {},
                  "stage_seconds": {"train": 1.0}, "wall_seconds": 1.0,
                  "test_limit": config.data.test_limit}  # fmt: skip
        out.mkdir(parents=True)
        (out / "config.json").write_text(json.dumps(as_dict(config), default=str))
        (out / pipeline.RESULT_NAME).write_text(json.dumps(result))
        return result

    monkeypatch.setattr(pipeline, "run", fake_run)
    monkeypatch.setattr(pipeline, "check_available", lambda *args, **kwargs: None)  # no data here
    monkeypatch.chdir(tmp_path)
    for name in ("ant", "moth"):
        (tmp_path / "dtd" / name).mkdir(parents=True)
    workdir = f"--workdir={tmp_path / 'runs'}"
    assert vtab.main(["--adapter=lora", "--source=folder", "--task=dtd", workdir]) == 0
    assert not (tmp_path / "runs" / "vtab_table.md").exists()  # no VTAB-1k task ran
    assert vtab.saved_vtab_results(tmp_path / "runs") == {}
    argv = ["--adapter=lora", "--preset=quickstart", "--task=cifar", workdir]
    assert vtab.main(argv) == 0
    (row,) = [line for line in (tmp_path / "runs" / "vtab_table.md").read_text().splitlines()
              if line.startswith("| lora")]  # fmt: skip
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2 + vtab.TASKS.index("cifar")] == "25.0"
    assert cells[2 + vtab.TASKS.index("dtd")] == "-"  # the folder is no VTAB-1k DTD
