"""The offline suite's packs, plan, executor and report, on CPU with tiny fake results."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import time
import types
import zipfile
from pathlib import Path
from typing import Any

import chex
import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from experiments import offline_suite, suite_report, suite_run
from experiments.config import ExperimentConfig, as_dict, override
from experiments.data.folder import open_npz_split
from experiments.data.splits import TEST_CAP
from experiments.suite_data import (
    check_pack,
    few_shot_pack,
    full_precision_copy,
    half_precision_copy,
    offline_pack,
    pack_positions,
    pack_seed,
    write_pack,
)
from experiments.suite_plan import (
    Assets,
    Run,
    SuiteSettings,
    choose_lr,
    groups,
    in_part,
    parse_part,
    phase_one,
    plan,
    run_config,
    val_accuracy,
    waiting_groups,
)
from experiments.suite_report import (
    BEGIN,
    END,
    Row,
    lr_sweep,
    markdown,
    millions,
    not_run,
    percent,
    plot_accuracy_vs_params,
    plot_few_shot,
    summarize,
    write_section,
)
from experiments.suite_run import (
    FAILURE,
    check_prepared,
    check_results_fit,
    execute,
    finished,
    inputs,
    prepare,
)

TINY = SuiteSettings(
    tasks=("digits",),
    methods=("linear", "glora"),
    conv_tasks=(),
    conv_methods=(),
    fewshot_task="digits",
    shots=(2,),
    fewshot_methods=("linear",),
    learning_rates=(1e-4, 1e-3),
    seeds=(0, 1, 2),
    budgets=(100_000, 200_000),
)


def fake_result(*, val: float, test: float, params: int = 10, search: bool = False) -> dict:
    searched = {"val_accuracy": val, "seconds": 2.0} if search else {}
    return {
        "test_accuracy": test, "val_accuracy_supernet_mean": 0.0 if search else val,
        "trainable_params": params, "head_params": 7, "train_seconds": 3.0, "search": searched,
    }  # fmt: skip


def synthetic(num: int, *, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(num_classes), num // num_classes + 1)[:num]
    return rng.integers(0, 256, (num, 6, 5), dtype=np.uint8), rng.permutation(labels)


# ----------------------------------------------------------------------------- packs


@pytest.mark.parametrize(("seed", "num_test"), [(0, 37), (3, 1200)])
def test_pack_reproduces_the_given_splits(tmp_path: Path, seed: int, num_test: int) -> None:
    train = synthetic(800, num_classes=10, seed=1)
    val = synthetic(200, num_classes=10, seed=2)
    test = synthetic(num_test, num_classes=10, seed=3)
    pack = write_pack(
        tmp_path / "p.npz", train=train, val=val, test=test, num_classes=10, seed=seed
    )
    for name, (images, labels) in {"train800": train, "val200": val, "test": test}.items():
        got, num_classes = open_npz_split(pack, name, seed=seed)
        assert num_classes == 10
        np.testing.assert_array_equal(got.images, images)
        np.testing.assert_array_equal(got.labels, labels)


def test_pack_refuses_another_split_seed(tmp_path: Path) -> None:
    parts = {"train": (800, 1), "val": (200, 2), "test": (40, 3)}
    data = {k: synthetic(n, num_classes=10, seed=s) for k, (n, s) in parts.items()}
    pack = write_pack(tmp_path / "p.npz", **data, num_classes=10, seed=0)
    assert pack_seed(pack) == 0
    with pytest.raises(ValueError, match="packed for split seed 0, not 1"):
        open_npz_split(pack, "train800", seed=1)
    with np.load(pack) as arrays:  # the same arrays without the seed: any seed splits them
        np.savez(tmp_path / "own.npz", images=arrays["images"], labels=arrays["labels"])
    assert pack_seed(tmp_path / "own.npz") is None
    assert len(open_npz_split(tmp_path / "own.npz", "val200", seed=1)[0]) == 200


@pytest.mark.parametrize(
    ("wrong", "match"), [("train", "train must hold 800"), ("val", "val must hold 200")]
)
def test_pack_refuses_wrong_sizes(tmp_path: Path, wrong: str, match: str) -> None:
    parts = {
        "train": synthetic(800, num_classes=2, seed=0),
        "val": synthetic(200, num_classes=2, seed=1),
    }
    parts[wrong] = synthetic(10, num_classes=2, seed=2)
    small = synthetic(10, num_classes=2, seed=3)
    with pytest.raises(ValueError, match=match):
        write_pack(tmp_path / "p.npz", **parts, test=small, num_classes=2, seed=0)


def test_a_pack_holds_one_to_test_cap_test_examples() -> None:
    positions = pack_positions(TEST_CAP, seed=0)  # every slot of the pack, each once
    np.testing.assert_array_equal(np.sort(positions), np.arange(800 + 200 + TEST_CAP))
    for num_test in (0, TEST_CAP + 1):
        with pytest.raises(ValueError, match=f"a pack holds 1 to {TEST_CAP} test examples"):
            pack_positions(num_test, seed=0)


@pytest.mark.parametrize("shots", [1, 4])
def test_few_shot_pack_tiles_the_first_k_of_each_class(tmp_path: Path, shots: int) -> None:
    train = synthetic(800, num_classes=10, seed=1)
    val = synthetic(200, num_classes=10, seed=2)
    test = synthetic(50, num_classes=10, seed=3)
    pack = write_pack(tmp_path / "p.npz", train=train, val=val, test=test, num_classes=10, seed=5)
    few = few_shot_pack(pack, shots, tmp_path / "few.npz", seed=5)
    # reference: first `shots` examples of each class in train800 order (pool order)
    keep = np.concatenate([np.flatnonzero(train[1] == c)[:shots] for c in range(10)])
    keep.sort()
    got, _ = open_npz_split(few, "train800", seed=5)
    np.testing.assert_array_equal(got.images, np.tile(train[0][keep], (800 // (10 * shots), 1, 1)))
    np.testing.assert_array_equal(got.labels, np.tile(train[1][keep], 800 // (10 * shots)))
    np.testing.assert_array_equal(np.bincount(got.labels), np.full(10, 80))
    for name, (images, _) in {"val200": val, "test": test}.items():
        np.testing.assert_array_equal(open_npz_split(few, name, seed=5)[0].images, images)


def test_few_shot_sets_that_do_not_tile_train800_are_refused(tmp_path: Path) -> None:
    parts = {"train": (800, 1), "val": (200, 2), "test": (50, 3)}
    data = {k: synthetic(n, num_classes=10, seed=s) for k, (n, s) in parts.items()}
    pack = write_pack(tmp_path / "p.npz", **data, num_classes=10, seed=0)
    with pytest.raises(ValueError, match="3 shots x 10 classes = 30 does not divide 800"):
        few_shot_pack(pack, 3, tmp_path / "few.npz", seed=0)


@pytest.mark.parametrize(
    ("array", "position", "split"),
    [(None, None, None), ("images", 5, "train800"), ("labels", 900, "val200"),
     ("images", 1500, "test")],
    ids=["as-packed", "train800-image", "val200-label", "test-image"],
)  # fmt: skip
def test_an_offline_pack_holds_the_offline_splits_and_a_changed_one_fails_its_check(
    tmp_path: Path, array: str | None, position: int | None, split: str | None
) -> None:
    """digits (1797 examples: test = the 797 past the pool) packed at split seed 3; one changed
    example of train800 / val200 / test (its position in their concatenation) is found."""
    datasets = pytest.importorskip("sklearn.datasets")
    pack = offline_pack("digits", tmp_path / "digits.npz", seed=3)
    if array is None:
        check_pack(pack, "digits", seed=3, shots=(1, 4))
        digits = datasets.load_digits()
        test = np.random.default_rng(3).permutation(1797)[1000:]
        got, num_classes = open_npz_split(pack, "test", seed=3)
        assert num_classes == 10 and pack_seed(pack) == 3
        np.testing.assert_array_equal(got.images, np.rint(digits.images[test] * 255 / 16))
        np.testing.assert_array_equal(got.labels, digits.target[test])
        return
    assert position is not None
    with np.load(pack) as stored:
        arrays = {key: stored[key] for key in stored.files}
    slot = pack_positions(797, seed=3)[position]
    arrays[array][slot] = (arrays[array][slot] + 1) % 10  # another label, other pixels
    np.savez(pack, **arrays)
    with pytest.raises(ValueError, match=f"digits.npz: split '{split}' differs from offline task "):
        check_pack(pack, "digits", seed=3)


def test_a_half_precision_copy_refuses_values_float16_cannot_hold(tmp_path: Path) -> None:
    np.savez(tmp_path / "w.npz", ok=np.ones(3, np.float32), big=np.array([1.0, 7e4], np.float32))
    with pytest.raises(ValueError, match=r"w\.npz: big hold finite values that float16 cannot$"):
        half_precision_copy(tmp_path / "w.npz", tmp_path / "w16.npz")
    assert not (tmp_path / "w16.npz").exists()


def test_precision_copies_round_floats_only(tmp_path: Path) -> None:
    weights = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    wide = np.random.default_rng(1).normal(size=5)  # float64: neither copy touches it
    np.savez(tmp_path / "w.npz", w=weights, meta=np.array("{}"), steps=np.arange(3), wide=wide)
    half = half_precision_copy(tmp_path / "w.npz", tmp_path / "w16.npz")
    full = full_precision_copy(half, tmp_path / "w32.npz")
    with np.load(half) as h, np.load(full) as f:
        assert h["w"].dtype == np.float16 and f["w"].dtype == np.float32
        chex.assert_trees_all_close(f["w"], weights.astype(np.float16).astype(np.float32))
        assert str(f["meta"]) == "{}"
        np.testing.assert_array_equal(f["steps"], np.arange(3))
        for copy in (h, f):
            assert copy["wide"].dtype == np.float64
            np.testing.assert_array_equal(copy["wide"], wide)
    for path, kind in ((half, zipfile.ZIP_DEFLATED), (full, zipfile.ZIP_STORED)):
        with zipfile.ZipFile(path) as archive:  # what travels is deflated
            assert {entry.compress_type for entry in archive.infolist()} == {kind}


# ----------------------------------------------------------------------------- plan


def test_phase_one_is_the_lr_grid_at_seed_zero() -> None:
    runs = plan(TINY, {})
    assert [(r.method, r.lr, r.seed, r.budget) for r in runs] == [
        ("linear", 1e-4, 0, None), ("linear", 1e-3, 0, None),
        ("glora", 1e-4, 0, 100_000), ("glora", 1e-3, 0, 100_000),
    ]  # fmt: skip
    assert len(waiting_groups(TINY, {})) == 3  # linear, glora and the few-shot linear group


def phase_one_results(linear_val: tuple[float, float], glora_val: tuple[float, float]) -> dict:
    results = {}
    for lr, val in zip(TINY.learning_rates, linear_val, strict=True):
        results[Run("main", "digits", "dinov2-s14", "linear", lr, 0).run_id] = fake_result(
            val=val, test=val
        )
    for lr, val in zip(TINY.learning_rates, glora_val, strict=True):
        run = Run("main", "digits", "dinov2-s14", "glora", lr, 0, budget=100_000)
        results[run.run_id] = fake_result(val=val, test=val, search=True)
    return results


def test_each_planned_run_is_of_a_group_at_the_groups_lr() -> None:
    """A run's group is its (study, task, backbone, method, shots): lr, seed and budget aside."""
    settings = dataclasses.replace(TINY, conv_tasks=("digits",), conv_methods=("linear",))
    results = phase_one_results((0.5, 0.6), (0.7, 0.2))  # the conv study's lr grid is not run
    runs = plan(settings, results)
    group_of = {r: (r.study, r.task, r.backbone, r.method, r.shots) for r in runs}
    assert set(group_of.values()) == set(groups(settings))
    for r, group in group_of.items():
        assert r in phase_one(settings, group) or r.lr == choose_lr(settings, group, results)


def test_plan_runs_the_main_studys_lr_grid_before_the_conv_studys() -> None:
    settings = dataclasses.replace(TINY, conv_tasks=("digits",), conv_methods=("linear",))
    runs = plan(settings, {})
    assert [(r.study, r.backbone, r.method) for r in runs] == [
        *[("main", "dinov2-s14", "linear")] * 2, *[("main", "dinov2-s14", "glora")] * 2,
        *[("conv", "efficientnet-lite0", "linear")] * 2,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("linear_val", "want"), [((0.5, 0.7), 1e-3), ((0.7, 0.5), 1e-4), ((0.6, 0.6), 1e-4)]
)
def test_lr_is_the_best_val_at_seed_zero(linear_val: tuple[float, float], want: float) -> None:
    results = phase_one_results(linear_val, (0.1, 0.2))
    group = ("main", "digits", "dinov2-s14", "linear", None)
    assert choose_lr(TINY, group, results) == want
    seeds = {(r.seed, r.lr) for r in plan(TINY, results) if r.method == "linear" and not r.shots}
    assert {(s, want) for s in TINY.seeds} <= seeds
    few = [r for r in plan(TINY, results) if r.study == "fewshot"]
    assert {(r.lr, r.seed, r.shots) for r in few} == {(want, s, 2) for s in TINY.seeds}


def test_a_tie_goes_to_the_smaller_lr_in_whatever_order_the_grid_is_given() -> None:
    settings = dataclasses.replace(TINY, learning_rates=(1e-3, 1e-4))
    results = {
        Run("main", "digits", "dinov2-s14", "linear", lr, 0).run_id: fake_result(val=0.6, test=0.6)
        for lr in settings.learning_rates
    }
    assert choose_lr(settings, ("main", "digits", "dinov2-s14", "linear", None), results) == 1e-4


def test_failed_run_is_never_the_chosen_lr() -> None:
    results = phase_one_results((0.9, 0.1), (0.1, 0.2))
    results[Run("main", "digits", "dinov2-s14", "linear", 1e-4, 0).run_id] = {"failed": "nan"}
    assert choose_lr(TINY, ("main", "digits", "dinov2-s14", "linear", None), results) == 1e-3


def test_a_group_whose_every_lr_failed_chooses_none_and_plans_no_seeds(tmp_path: Path) -> None:
    """No val200 accuracy, no lr: neither its seeds nor its few-shot runs run at a failed lr, the
    executor does not wait for a choice that cannot come, and the report says why."""
    inner = fake_runner({1e-4: 0.6, 1e-3: 0.7}, [])

    def runner(config: ExperimentConfig, workdir: Path) -> dict:
        if workdir.name.startswith("main-digits-dinov2-s14-linear-"):
            raise FloatingPointError("training loss is nan at step 3")
        return inner(config, workdir)

    runs = tmp_path / "runs"
    done = execute(TINY, prepared_assets(tmp_path), runs, runner=runner, deadline_s=5.0,
                   poll_s=0.01)  # fmt: skip
    assert sorted(d for d in done if "linear" in d) == [
        "main-digits-dinov2-s14-linear-lr0.0001-s0", "main-digits-dinov2-s14-linear-lr0.001-s0"
    ]  # fmt: skip
    results = finished(runs)
    linear = [g for g in groups(TINY) if g[3] == "linear"]
    assert [choose_lr(TINY, g, results) for g in linear] == [None, None]
    assert waiting_groups(TINY, results) == []
    assert not [r for r in summarize(TINY, results) if r.method == "linear"]
    assert not_run(TINY, results) == [
        "- main digits dinov2-s14 linear: every lr of the grid failed at seed 0, no lr chosen, "
        "seeds not planned",
        "- fewshot digits dinov2-s14 linear 2-shot: every lr of the grid failed at seed 0, no lr "
        "chosen, seeds not planned",
    ]


def test_glora_later_budgets_run_at_the_first_budgets_lr() -> None:
    results = phase_one_results((0.5, 0.6), (0.8, 0.2))
    glora = {(r.budget, r.seed, r.lr) for r in plan(TINY, results) if r.method == "glora"}
    assert {(b, s, 1e-4) for b in TINY.budgets for s in TINY.seeds} <= glora


def test_parts_split_the_plan_without_overlap() -> None:
    runs = plan(TINY, phase_one_results((0.5, 0.6), (0.8, 0.2)))
    parts = [[r.run_id for r in runs if in_part(r, (i, 3))] for i in (1, 2, 3)]
    assert sorted(sum(parts, [])) == sorted(r.run_id for r in runs)


@pytest.mark.parametrize("text", ["0/2", "3/2", "1-2", "a/b", "5/4", "half"])
def test_parse_part_refuses_bad_parts(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    message = f"expected i/n with 1 <= i <= n, got {text!r}"
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
        parse_part(text)
    with pytest.raises(SystemExit):  # the message argparse prints is this one, not its own
        offline_suite.parse_args(["run", "--part", text])
    assert f"error: argument --part: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--assets", "--runs", "--claims"])
@pytest.mark.parametrize(
    ("value", "message"),
    [("", "this is an empty path: give one"), ("gs://b/runs", "this 'gs://b/runs' is a URL")],
)
def test_path_flags_refuse_empty_paths_and_urls(
    flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Path("") is the working directory, Path("gs://b/runs") the local folder gs:/b/runs."""
    with pytest.raises(SystemExit):
        offline_suite.parse_args(["run", f"{flag}={value}"])
    assert f"error: argument {flag}: {message}" in capsys.readouterr().err


def test_run_flags_take_either_spelling() -> None:
    """--dry_run, --deadline_s as experiments.vtab spells its flags."""
    argv = ["--dry_run", "--deadline_s=5", "--compile_cache=c", "--matmul_precision=high"]
    underscored = offline_suite.parse_args(["run", *argv])
    assert underscored == offline_suite.parse_args(["run", *(a.replace("_", "-") for a in argv)])
    assert underscored.dry_run and underscored.deadline_s == 5.0


@pytest.mark.parametrize(("text", "part"), [("1/1", (1, 1)), ("2/2", (2, 2)), ("3/4", (3, 4))])
def test_parse_part_reads_good_parts(text: str, part: tuple[int, int]) -> None:
    assert parse_part(text) == part


@pytest.mark.parametrize(
    ("result", "want"),
    [
        (fake_result(val=0.3, test=0.9), 0.3),
        (fake_result(val=0.7, test=0.9, search=True), 0.7),  # the subnet's, not the supernet's
        ({"failed": "NonFiniteLossError: nan"}, -math.inf),
    ],
)
def test_a_run_is_judged_by_its_val200_accuracy(result: dict, want: float) -> None:
    assert val_accuracy(result) == want


def test_glora_lr_is_chosen_by_its_searched_subnets_accuracy() -> None:
    results = phase_one_results((0.5, 0.6), (0.1, 0.2))  # supernet means 0.0 at both lrs
    assert choose_lr(TINY, ("main", "digits", "dinov2-s14", "glora", None), results) == 1e-3


def test_a_failed_lr_loses_even_to_zero_accuracy() -> None:
    results = phase_one_results((0.9, 0.0), (0.1, 0.2))
    results[Run("main", "digits", "dinov2-s14", "linear", 1e-4, 0).run_id] = {"failed": "nan"}
    assert choose_lr(TINY, ("main", "digits", "dinov2-s14", "linear", None), results) == 1e-3


def test_few_shot_glora_runs_at_the_first_budget_only() -> None:
    settings = dataclasses.replace(TINY, fewshot_methods=("linear", "glora"))
    results = phase_one_results((0.5, 0.6), (0.8, 0.2))
    few = {(r.budget, r.seed, r.lr, r.shots) for r in plan(settings, results)
           if r.study == "fewshot" and r.method == "glora"}  # fmt: skip
    assert few == {(100_000, s, 1e-4, 2) for s in TINY.seeds}


def test_run_config_applies_the_search_and_split_settings(tmp_path: Path) -> None:
    settings = dataclasses.replace(
        TINY, split_seed=3, test_limit=50, population=12, top_k=3, num_mutations=4,
        num_crossovers=5, generations=2,
    )  # fmt: skip
    run = Run("main", "digits", "dinov2-s14", "glora", 1e-3, 1, budget=200_000)
    config = run_config(run, settings, Assets(tmp_path / "a", tmp_path / "d"), tmp_path / "cache")
    assert (config.data.split_seed, config.data.test_limit) == (3, 50)
    s = config.search
    assert (s.param_budget, s.population, s.top_k, s.num_mutations, s.num_crossovers,
            s.generations) == (200_000, 12, 3, 4, 5, 2)  # fmt: skip


def test_run_config_applies_the_settings(tmp_path: Path) -> None:
    run = Run("fewshot", "digits", "dinov2-s14", "glora", 5e-4, 2, shots=2, budget=200)
    config = run_config(run, TINY, Assets(tmp_path / "a", tmp_path / "d"), tmp_path / "cache")
    assert config.data.task == str(tmp_path / "d" / "data" / "digits-2shot.npz")
    assert config.data.source == "npz"
    assert config.backbone.checkpoint == str(tmp_path / "d" / "weights" / "dinov2-s14.npz")
    assert (config.train.optim.learning_rate, config.train.seed) == (5e-4, 2)
    assert (config.train.epochs, config.search.param_budget) == (TINY.epochs, 200)
    assert config.backbone.image_size == TINY.image_size and config.backbone.scan


@pytest.mark.parametrize(("method", "space"), [("glora", "small"), ("lora", "large")])
def test_run_config_sets_only_the_knobs_its_method_reads(
    tmp_path: Path, method: str, space: str
) -> None:
    # a LoRA run's config.json recorded the suite's GLoRA space, which LoRA never reads
    settings = dataclasses.replace(TINY, glora_space="small")
    run = Run("vtab", "digits", "dinov2-s14", method, 1e-3, 0)
    config = run_config(run, settings, Assets(tmp_path / "a", tmp_path / "d"), tmp_path / "cache")
    assert (config.method.name, config.method.space) == (method, space)


# ----------------------------------------------------------------------------- executor


def prepared_assets(tmp_path: Path) -> Assets:
    """Assets with files wherever TINY's runs look for inputs: empty weights, packs that hold
    only their split seed."""
    assets = Assets(tmp_path / "a", tmp_path / "d")
    backbones, packs = inputs(TINY)
    for path in [assets.weights(b) for b in backbones]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    for path in [assets.pack(t, k) for t, k in packs]:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as file:
            np.savez(file, split_seed=np.int64(TINY.split_seed))
    return assets


def test_packs_of_another_split_seed_are_refused_before_any_run(tmp_path: Path) -> None:
    assets = prepared_assets(tmp_path)
    check_prepared(TINY, assets)
    with pytest.raises(ValueError, match="made for other split seeds than 1"):
        check_prepared(dataclasses.replace(TINY, split_seed=1), assets)


def test_prepare_derives_weights_few_shot_packs_and_cache(tmp_path: Path) -> None:
    settings = dataclasses.replace(TINY, image_size=8)
    assets = Assets(tmp_path / "a", tmp_path / "d")
    with pytest.raises(FileNotFoundError, match="prepare"):
        check_prepared(settings, assets)
    parts = {"train": (800, 1), "val": (200, 2), "test": (30, 3)}
    data = {k: synthetic(n, num_classes=10, seed=s) for k, (n, s) in parts.items()}
    write_pack(assets.pack("digits"), **data, num_classes=10, seed=0)
    with pytest.raises(FileNotFoundError, match=r"^neither \S+/d/weights/dinov2-s14\.npz nor "
                       r"\S+/a/weights/dinov2-s14\.f16\.npz: run `python -m experiments\.offline_"
                       r"suite pack` where the weights are installed$"):  # fmt: skip
        prepare(settings, assets, tmp_path / "runs")
    weights = np.linspace(-1, 1, 6, dtype=np.float32)
    assets.half_weights("dinov2-s14").parent.mkdir(parents=True)
    np.savez(assets.half_weights("dinov2-s14"), w=weights.astype(np.float16))
    prepare(settings, assets, tmp_path / "runs")
    check_prepared(settings, assets)
    with np.load(assets.weights("dinov2-s14")) as full:
        chex.assert_trees_all_close(full["w"], weights.astype(np.float16).astype(np.float32))
    got, _ = open_npz_split(assets.pack("digits", 2), "train800", seed=0)
    assert np.bincount(got.labels).tolist() == [80] * 10
    assert len(list((tmp_path / "runs" / "cache").glob("*.labels.npy"))) == 6  # 2 packs x 3
    # a few-shot pack left by another split seed is rebuilt, not read with the wrong seed
    other_seed = write_pack(tmp_path / "seed1.npz", **data, num_classes=10, seed=1)
    few_shot_pack(other_seed, 2, assets.pack("digits", 2), seed=1)
    assets.half_weights("dinov2-s14").unlink()  # float32 weights made: the copy is not needed
    prepare(settings, assets, tmp_path / "runs")
    with np.load(assets.weights("dinov2-s14")) as full:
        chex.assert_trees_all_close(full["w"], weights.astype(np.float16).astype(np.float32))
    assert pack_seed(assets.pack("digits", 2)) == 0
    np.testing.assert_array_equal(
        open_npz_split(assets.pack("digits", 2), "train800", seed=0)[0].images, got.images
    )


def fake_runner(val_of: dict[float, float], calls: list[str]) -> Any:
    """Writes result.json (and a checkpoint dir) like pipeline.run; lr 1e-3 diverges for glora."""

    def runner(config: ExperimentConfig, workdir: Path) -> dict:
        calls.append(workdir.name)
        lr = config.train.optim.learning_rate
        if config.method.name == "glora" and lr == 1e-3:
            raise FloatingPointError("training loss is nan at step 3")
        copied = (workdir / "train" / "checkpoints").is_dir()
        (workdir / "train" / "checkpoints").mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(json.dumps(as_dict(config), default=str))
        glora = config.method.name == "glora"
        result = fake_result(
            val=val_of[lr], test=val_of[lr] + 0.01 * config.train.seed, search=glora
        ) | {"started_from_checkpoint": copied}
        (workdir / "result.json").write_text(json.dumps(result))
        return result

    return runner


@pytest.mark.parametrize("given", [True, False])
def test_execute_runs_everything_once_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: bool
) -> None:
    """With a runner given (the tests') or without: then each run is ``pipeline.run``'s."""
    calls: list[str] = []
    runner = fake_runner({1e-4: 0.6, 1e-3: 0.7}, calls)
    if not given:
        import experiments.pipeline

        monkeypatch.setattr(experiments.pipeline, "run", runner)
    assets = prepared_assets(tmp_path)
    done = execute(TINY, assets, tmp_path / "runs", runner=runner if given else None, poll_s=0.0)
    results = finished(tmp_path / "runs")
    assert sorted(done) == sorted(calls) == sorted(results)
    assert not [r for r in plan(TINY, results) if r.run_id not in results]
    failed = [k for k, v in results.items() if "failed" in v]
    assert failed == ["main-digits-dinov2-s14-glora-b100000-lr0.001-s0"]
    assert results[failed[0]] == {"failed": "FloatingPointError: training loss is nan at step 3"}
    assert (tmp_path / "runs" / failed[0] / FAILURE).is_file()
    # glora's second budget (lr 1e-4 chosen: 1e-3 failed) starts from the first one's supernet
    for s in TINY.seeds:
        first, second = (f"main-digits-dinov2-s14-glora-b{b}-lr0.0001-s{s}" for b in TINY.budgets)
        assert not results[first]["started_from_checkpoint"]
        assert results[second]["started_from_checkpoint"]
    assert execute(TINY, assets, tmp_path / "runs", runner=runner, poll_s=0.0) == []


def test_finished_runs_of_other_settings_are_refused(tmp_path: Path) -> None:
    assets = prepared_assets(tmp_path)
    runs = tmp_path / "runs"
    smoke = dataclasses.replace(TINY, epochs=2, seeds=(0,))
    execute(smoke, assets, runs, runner=fake_runner({1e-4: 0.6, 1e-3: 0.7}, []), poll_s=0.0)
    with pytest.raises(ValueError, match=r"made with other settings.*train\.epochs: 2 -> 30"):
        execute(TINY, assets, runs, runner=fake_runner({1e-4: 0.6, 1e-3: 0.7}, []), poll_s=0.0)
    with pytest.raises(ValueError, match="made with other settings"):
        check_results_fit(TINY, assets, runs, finished(runs))
    check_results_fit(smoke, Assets(tmp_path / "elsewhere", tmp_path / "d2"), runs, finished(runs))


def test_a_seed_run_of_other_settings_is_refused(tmp_path: Path) -> None:
    """Every planned run is checked, not only the lr grid's: here a later seed's config.json."""
    assets, runs = prepared_assets(tmp_path), tmp_path / "runs"
    execute(TINY, assets, runs, runner=fake_runner({1e-4: 0.6, 1e-3: 0.7}, []), poll_s=0.0)
    seed_run = Run("main", "digits", "dinov2-s14", "linear", 1e-3, 2)
    config = override(run_config(seed_run, TINY, assets, runs / "cache"), ["train.epochs=2"])
    (runs / seed_run.run_id / "config.json").write_text(json.dumps(as_dict(config), default=str))
    with pytest.raises(ValueError, match=rf"1 runs .* e\.g\. {seed_run.run_id} \(train\.epochs"):
        check_results_fit(TINY, assets, runs, finished(runs))


def test_a_finished_run_without_its_config_is_refused(tmp_path: Path) -> None:
    """Its settings cannot be checked: a smoke test's result would stand for the study's."""
    assets = prepared_assets(tmp_path)
    runs = tmp_path / "runs"
    smoke = dataclasses.replace(TINY, epochs=2, seeds=(0,))
    execute(smoke, assets, runs, runner=fake_runner({1e-4: 0.6, 1e-3: 0.7}, []), poll_s=0.0)
    for path in runs.glob("*/config.json"):
        path.unlink()
    with pytest.raises(ValueError, match=r"made with other settings.*\(no config\.json\)"):
        check_results_fit(TINY, assets, runs, finished(runs))
    failed = runs / "main-digits-dinov2-s14-glora-b100000-lr0.001-s0"
    for path in runs.glob("*/result.json"):
        path.unlink()  # a failed run may have failed before its config was written
    assert (failed / FAILURE).is_file()
    check_results_fit(TINY, assets, runs, finished(runs))


def test_overrides_are_checked_together_in_any_order() -> None:
    together = ["tasks=('digits',)", "fewshot_task=digits"]  # the first alone is refused
    for order in (together, together[::-1]):
        assert override(SuiteSettings(), order).fewshot_task == "digits"
    with pytest.raises(ValueError, match="few-shot runs take the lr chosen"):
        override(SuiteSettings(), together[:1])


def test_tuple_settings_take_lists_and_their_items_the_items_type() -> None:
    settings = override(SuiteSettings(), ["shots=[1, 2]", "learning_rates=(1, 0.5)"])
    assert type(settings.shots) is tuple and settings.shots == (1, 2)
    assert [type(lr) for lr in settings.learning_rates] == [float, float]  # 1 -> 1.0


@pytest.mark.parametrize(
    ("assignment", "message"),
    [("shots=(1, 2.5)", "config key 'shots' takes tuple[int, ...], got (1, 2.5)"),
     ("seeds=(0, True)", "config key 'seeds' takes tuple[int, ...], got (0, True)"),
     ("learning_rates=(0.0001, 'big')",  # failed at the plan's run ids: "Unknown format code"
      "config key 'learning_rates' takes tuple[float, ...], got (0.0001, 'big')"),
     ("tasks=['digits', None]", "config key 'tasks' takes tuple[str, ...], got ['digits', None]")],
)  # fmt: skip
def test_tuple_settings_refuse_items_of_another_type(assignment: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        override(SuiteSettings(), [assignment])


@dataclasses.dataclass(frozen=True)
class _Pair:
    pair: tuple[int, float] = (0, 0.0)


@pytest.mark.parametrize(
    ("value", "want"),
    [("(1, 2)", (1, 2.0)), ("[3, 0.5]", (3, 0.5)), ("(1,)", None), ("(1, 2, 3)", None),
     ("(1.5, 2)", None), ("(True, 2)", None), ("('a', 2)", None)],
)  # fmt: skip
def test_a_fixed_length_tuple_setting_checks_its_length_and_each_positions_type(
    value: str, want: tuple | None
) -> None:
    if want is None:
        with pytest.raises(ValueError, match=r"config key 'pair' takes tuple\[int, float\]"):
            override(_Pair(), [f"pair={value}"])
    else:
        got = override(_Pair(), [f"pair={value}"]).pair
        assert got == want and [type(v) for v in got] == [int, float]


@pytest.mark.parametrize(
    "change", [{"tasks": ("mnist5k",)}, {"methods": ("glora",)}, {"fewshot_task": "mnist5k"}]
)
def test_settings_refuse_few_shot_runs_without_their_lr_group(change: dict) -> None:
    with pytest.raises(ValueError, match="few-shot runs take the lr chosen"):
        dataclasses.replace(TINY, **change)
    dataclasses.replace(TINY, **change, shots=())  # no few-shot study: nothing to borrow


def test_workers_killed_by_a_signal_fail_the_launch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    codes = iter([0, -9])

    class Worker:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.code = next(codes)

        def poll(self) -> int:
            return self.code

        wait = poll

    monkeypatch.setattr(offline_suite.subprocess, "Popen", Worker)
    args = offline_suite.parse_args(["run", "--workers", "2", "--runs", str(tmp_path)])
    assert offline_suite.launch_workers(args, poll_s=0.0) == 1


def test_a_failed_worker_stops_the_others_and_its_log_tail_is_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The others could wait forever on a run the failed one claimed (and the launch with
    them): they are terminated, and the failed one's code and last 20 log lines reported."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "worker1.log").write_text("an earlier launch's line\n")
    workers: list[Any] = []

    class Worker:
        def __init__(self, command: list[str], *, stdout: Any, **kwargs: Any) -> None:
            self.index, self.code, self.polls = len(workers), None, 0
            workers.append(self)
            if self.index == 1:  # fails at its second poll, after 30 lines of log
                stdout.write("".join(f"line {i}\n" for i in range(30)))

        def poll(self) -> int | None:
            self.polls += 1
            if self.index == 1 and self.polls > 1:
                self.code = 3
            return self.code

        def terminate(self) -> None:
            self.code = -15

        def wait(self) -> int:
            if self.code is None:
                raise AssertionError("waited on a worker that never ends by itself")
            return self.code

    monkeypatch.setattr(offline_suite.subprocess, "Popen", Worker)
    args = offline_suite.parse_args(["run", "--workers", "3", "--runs", str(tmp_path)])
    assert offline_suite.launch_workers(args, poll_s=0.0) == 3
    assert [w.code for w in workers] == [-15, 3, -15]
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"worker 1 failed (exit code 3), the others were stopped; the end of "
        f"{tmp_path / 'logs' / 'worker1.log'}:",
        *(f"line {i}" for i in range(10, 30)),
    ]


def test_workers_must_be_at_least_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        offline_suite.parse_args(["run", "--workers", "0"])
    assert "--workers: expected an integer >= 1, got 0" in capsys.readouterr().err


def test_report_without_runs_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    doc, figures = tmp_path / "doc.md", tmp_path / "figures"
    argv = ["report", "--runs", str(tmp_path / "runs"), "--assets", str(tmp_path / "assets"),
            "--doc", str(doc), "--figures", str(figures)]  # fmt: skip
    with pytest.raises(ValueError, match="no finished runs under .*runs: give the --runs"):
        offline_suite.main(argv)
    assert not doc.exists() and not figures.exists()


def test_execute_skips_runs_claimed_by_another_process(tmp_path: Path) -> None:
    calls: list[str] = []
    runner = fake_runner({1e-4: 0.6, 1e-3: 0.7}, calls)
    claimed = Run("main", "digits", "dinov2-s14", "linear", 1e-4, 0)
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / claimed.run_id).touch()
    assets = prepared_assets(tmp_path)
    done = execute(TINY, assets, tmp_path / "runs", runner=runner, deadline_s=0.3, poll_s=0.01,
                   claims=tmp_path / "claims")  # fmt: skip
    # the linear group (and the few-shot one after it) waits for the claimed run; glora goes on
    assert [d for d in done if "linear" in d] == ["main-digits-dinov2-s14-linear-lr0.001-s0"]
    assert len([d for d in done if "glora" in d]) == 2 + (len(TINY.seeds) - 1) + len(TINY.seeds)
    claim_files = sorted(p.name for p in (tmp_path / "claims").iterdir())
    assert claim_files == sorted([*done, claimed.run_id])


def test_finished_ignores_a_result_being_written(tmp_path: Path) -> None:
    for run_id, text in [("a", '{"test_accuracy": 0.5}'), ("b", '{"test_acc')]:
        (tmp_path / run_id).mkdir()
        (tmp_path / run_id / "result.json").write_text(text)
    assert finished(tmp_path) == {"a": {"test_accuracy": 0.5}}


def test_finished_prefers_a_result_to_a_failure(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / FAILURE).write_text('{"failed": "an earlier try"}')
    (tmp_path / "a" / "result.json").write_text('{"test_accuracy": 0.5}')
    assert finished(tmp_path) == {"a": {"test_accuracy": 0.5}}


def test_a_missing_pack_is_named_before_any_run(tmp_path: Path) -> None:
    assets = prepared_assets(tmp_path)
    assets.pack("digits", 2).unlink()  # the weights and the full pack are there
    with pytest.raises(FileNotFoundError, match=r"missing inputs \['[^']*digits-2shot.npz'\]"):
        check_prepared(TINY, assets)


def test_a_pack_without_a_recorded_split_seed_is_accepted(tmp_path: Path) -> None:
    assets = prepared_assets(tmp_path)
    with assets.pack("digits").open("wb") as file:  # a user's own npz: any seed splits it
        np.savez(file, images=np.zeros((3, 2, 2), np.uint8), labels=np.zeros(3, np.int32))
    check_prepared(TINY, assets)


def test_execute_refuses_missing_inputs_before_any_run(tmp_path: Path) -> None:
    calls: list[str] = []
    runner = fake_runner({1e-4: 0.6, 1e-3: 0.7}, calls)
    with pytest.raises(FileNotFoundError, match="missing inputs"):
        execute(TINY, Assets(tmp_path / "a", tmp_path / "d"), tmp_path / "runs", runner=runner)
    assert calls == []


def test_a_later_budget_waits_for_its_first_budgets_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process has claimed seed 1's first-budget run: this one runs all else, then waits
    (polls), and starts the later budget's seed 1 only once that supernet's result is there."""
    calls: list[str] = []
    runner = fake_runner({1e-4: 0.6, 1e-3: 0.7}, calls)
    source = Run("main", "digits", "dinov2-s14", "glora", 1e-4, 1, budget=100_000)
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / source.run_id).touch()
    assets, runs = prepared_assets(tmp_path), tmp_path / "runs"
    ran_before_waiting: list[str] = []

    def other_process_finishes(seconds: float) -> None:
        if not ran_before_waiting:
            ran_before_waiting.extend(calls)
            runner(run_config(source, TINY, assets, runs / "cache"), runs / source.run_id)

    clock = types.SimpleNamespace(monotonic=time.monotonic, sleep=other_process_finishes)
    monkeypatch.setattr(suite_run, "time", clock)
    execute(TINY, assets, runs, runner=runner, poll_s=0.0, claims=tmp_path / "claims")
    later = [f"main-digits-dinov2-s14-glora-b200000-lr0.0001-s{s}" for s in TINY.seeds]
    assert [run in ran_before_waiting for run in later] == [True, False, True]
    assert calls[-2:] == [source.run_id, later[1]]


def test_a_part_without_runs_of_its_own_yet_waits_for_the_lr_grids_of_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Part 2/3 holds none of the lr grid, but a seed run at the lr it picks: it polls until
    the other parts finish the grid, then runs that seed (it stopped at once, leaving it)."""
    settings = dataclasses.replace(TINY, methods=("linear",))
    calls: list[str] = []
    runner = fake_runner({1e-4: 0.7, 1e-3: 0.6}, calls)
    assets, runs = prepared_assets(tmp_path), tmp_path / "runs"
    seed_run = Run("main", "digits", "dinov2-s14", "linear", 1e-4, 1)
    assert in_part(seed_run, (2, 3)) and not [r for r in plan(settings, {}) if in_part(r, (2, 3))]

    sleeps: list[float] = []

    def other_parts_run(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) > 5:  # a part that polls on after the grid is done would hang the test
            raise AssertionError("still polling after the other parts finished the lr grid")
        results = finished(runs)
        for run in plan(settings, results):
            if not in_part(run, (2, 3)) and run.run_id not in results:
                runner(run_config(run, settings, assets, runs / "cache"), runs / run.run_id)

    clock = types.SimpleNamespace(monotonic=time.monotonic, sleep=other_parts_run)
    monkeypatch.setattr(suite_run, "time", clock)
    done = execute(settings, assets, runs, part=(2, 3), runner=runner, poll_s=0.0)
    assert done == [seed_run.run_id]


def test_a_started_later_budget_run_keeps_its_own_checkpoints(tmp_path: Path) -> None:
    later = Run("main", "digits", "dinov2-s14", "glora", 1e-4, 0, budget=200_000)
    own = tmp_path / "runs" / later.run_id / "train" / "checkpoints"
    own.mkdir(parents=True)
    (own / "step_7").touch()  # an execute that was killed had started it
    calls: list[str] = []
    runner = fake_runner({1e-4: 0.6, 1e-3: 0.7}, calls)
    execute(TINY, prepared_assets(tmp_path), tmp_path / "runs", runner=runner, poll_s=0.0)
    assert later.run_id in calls
    assert [p.name for p in own.iterdir()] == ["step_7"]


def test_a_supernet_copy_cut_off_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill in the copy leaves no checkpoint folder that looks finished (Orbax would take a
    step folder with half its files for a checkpoint): the next execute copies it whole."""
    first = Run("main", "digits", "dinov2-s14", "glora", 1e-4, 0, budget=100_000)
    later = dataclasses.replace(first, budget=200_000)
    runs = tmp_path / "runs"
    step = runs / first.run_id / "train" / "checkpoints" / "360"
    step.mkdir(parents=True)
    for name in ("state", "meta"):
        (step / name).write_text(name)

    def killed(source: Path, target: Path, **kwargs: Any) -> None:
        (Path(target) / "360").mkdir(parents=True)
        (Path(target) / "360" / "state").write_text("state")
        raise KeyboardInterrupt  # the process ends here

    monkeypatch.setattr(suite_run.shutil, "copytree", killed)
    with pytest.raises(KeyboardInterrupt):
        suite_run._copy_supernet(TINY, later, runs)
    monkeypatch.undo()
    suite_run._copy_supernet(TINY, later, runs)
    copied = runs / later.run_id / "train" / "checkpoints" / "360"
    assert sorted(p.name for p in copied.iterdir()) == ["meta", "state"]
    assert [p.name for p in (runs / later.run_id / "train").iterdir()] == ["checkpoints"]


def test_execute_starts_nothing_after_the_deadline(tmp_path: Path) -> None:
    calls: list[str] = []
    assets = prepared_assets(tmp_path)
    runner = fake_runner({1e-4: 0.6, 1e-3: 0.7}, calls)
    assert execute(TINY, assets, tmp_path / "runs", runner=runner, deadline_s=0.0) == []
    assert calls == []
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())


# ----------------------------------------------------------------------------- report


def full_results() -> dict:
    tests = {0: 0.80, 1: 0.84, 2: 0.83}
    results = phase_one_results((0.5, 0.6), (0.7, 0.2))
    for seed, test in tests.items():
        run = Run("main", "digits", "dinov2-s14", "linear", 1e-3, seed)
        results[run.run_id] = fake_result(val=0.6, test=test)
    for budget, seed in [(100_000, 1), (200_000, 0)]:
        run = Run("main", "digits", "dinov2-s14", "glora", 1e-4, seed, budget=budget)
        results[run.run_id] = fake_result(val=0.7, test=0.9, params=budget, search=True)
    results[Run("main", "digits", "dinov2-s14", "glora", 1e-4, 2, budget=100_000).run_id] = {
        "failed": "NonFiniteLossError: nan"
    }
    for seed in (0, 1):
        run = Run("fewshot", "digits", "dinov2-s14", "linear", 1e-3, seed, shots=2)
        results[run.run_id] = fake_result(val=0.3, test=0.3 + 0.1 * seed)
    return results


def test_summarize_means_and_sample_std() -> None:
    rows = {(r.study, r.label): r for r in summarize(TINY, full_results())}
    linear = rows[("main", "linear probe")]
    assert linear.lr == 1e-3 and linear.seeds == (0, 1, 2) and linear.head_params == 7
    chex.assert_trees_all_close(
        (linear.mean, linear.std), (np.mean([0.80, 0.84, 0.83]), np.std([0.80, 0.84, 0.83], ddof=1))
    )
    glora = rows[("main", "GLoRA ≤0.10M")]
    assert glora.seeds == (0, 1) and glora.failed == ("NonFiniteLossError: nan",)
    assert glora.params == np.mean([10, 100_000]) and glora.search_s == 2.0
    assert rows[("main", "GLoRA ≤0.20M")].seeds == (0,)
    few = rows[("fewshot", "linear probe")]
    chex.assert_trees_all_close((few.mean, few.std), (0.35, math.sqrt(0.005)))


def test_markdown_section_and_plots(tmp_path: Path) -> None:
    results = full_results()
    rows = summarize(TINY, results)
    text = markdown(TINY, rows, results)
    assert "| linear probe | 82.3 ± 2.1 (n=3) |" in text
    assert "60.0*" in text and "NonFiniteLossError" in text
    assert "- `main-digits-dinov2-s14-glora-b200000-lr0.0001-s1`" in text  # planned, not run
    assert "fewshot digits dinov2-s14 linear" not in text  # its lr is known: seeds planned
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\nhand-written discussion\n")
    write_section(doc, text)
    write_section(doc, "second\n")
    final = doc.read_text()
    assert final.count(BEGIN) == 1 and final.count(END) == 1
    assert "hand-written discussion" in final and "second" in final and "82.3" not in final
    for path in (
        plot_accuracy_vs_params(rows, tmp_path / "acc.png"),
        plot_few_shot(rows, tmp_path / "few.png"),
    ):
        assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "markers",
    [BEGIN, END, f"{END}\nold\n{BEGIN}", f"{BEGIN}\n{END}\n{END}"],
    ids=["begin", "end", "reversed", "two_ends"],
)
def test_a_doc_with_a_lost_section_marker_is_refused_and_kept(tmp_path: Path, markers: str) -> None:
    """Not appended to: the next report would replace the hand-written text up to its END."""
    doc = tmp_path / "results.md"
    doc.write_text(f"# Results\n\n{markers}\nhand-written discussion\n")
    before = doc.read_text()
    with pytest.raises(ValueError, match="markers of the generated section"):
        write_section(doc, "generated\n")
    assert doc.read_text() == before


def test_rows_and_the_lr_sweep_hold_only_arms_that_ran() -> None:
    """Before any seed run: a row for each arm whose seed-0 run is its lr grid's; the later
    budget and the few-shot arm have no run yet, and few-shot groups have no lr grid."""
    results = phase_one_results((0.5, 0.6), (0.7, 0.2))
    rows = summarize(TINY, results)
    assert [(r.study, r.label, r.seeds) for r in rows] == [
        ("main", "linear probe", (0,)), ("main", "GLoRA ≤0.10M", (0,))
    ]  # fmt: skip
    assert lr_sweep(TINY, results) == [
        ("main | digits | dinov2-s14 | linear probe", {1e-4: "50.0", 1e-3: "60.0*"}),
        ("main | digits | dinov2-s14 | GLoRA", {1e-4: "70.0*", 1e-3: "20.0"}),
    ]
    # GLoRA's lr grid unfinished: its seed-0 run at 1e-4 is done, but the lr is not chosen
    del results[Run("main", "digits", "dinov2-s14", "glora", 1e-3, 0, budget=100_000).run_id]
    rows = summarize(TINY, results)
    assert [(r.study, r.label, r.seeds) for r in rows] == [("main", "linear probe", (0,))]


def test_detail_rows_say_the_shots_and_search_time_of_each_arm() -> None:
    text = markdown(TINY, summarize(TINY, full_results()), full_results()).splitlines()
    for line in (
        "| digits | linear probe | 800 | 0.001 | 82.3 ± 2.1 (n=3) | 0,1,2 | 10 | 3.0 | – |",
        "| digits | GLoRA ≤0.10M | 800 | 0.0001 | 80.0 ± 14.1 (n=2) | 0,1 | 50,005 | 3.0 | 2.0 |",
        "| digits | linear probe | 2/class | 0.001 | 35.0 ± 7.1 (n=2) | 0,1 | 10 | 3.0 | – |",
    ):
        assert line in text


def test_failed_runs_listed_are_the_settings_own() -> None:
    """A failure.json of a run these settings do not plan (another method's) is not theirs."""
    results = full_results()
    linear_only = dataclasses.replace(TINY, methods=("linear",))
    text = markdown(linear_only, summarize(linear_only, results), results)
    failures = text.split("### Failed runs\n\n")[1].split("\n\n")[0]
    assert failures == "- none"
    text = markdown(TINY, summarize(TINY, results), results)
    assert "glora-b100000-lr0.0001-s2`: NonFiniteLossError: nan" in text


def test_not_run_lists_missing_runs_and_waiting_groups() -> None:
    lines = not_run(TINY, {})
    assert len(lines) == len(plan(TINY, {})) + 3  # 4 lr-grid runs, then 3 groups waiting
    assert lines[-1] == (
        "- fewshot digits dinov2-s14 linear 2-shot: lr not chosen yet (lr grid unfinished), "
        "seeds not planned"
    )


@pytest.mark.parametrize("field", ["learning_rates", "seeds", "budgets"])
def test_settings_refuse_an_empty_grid(field: str) -> None:
    with pytest.raises(ValueError, match="learning_rates, seeds and budgets must each hold"):
        dataclasses.replace(TINY, **{field: ()})


def test_settings_refuse_seeds_not_starting_at_zero() -> None:
    with pytest.raises(ValueError, match="seed 0"):
        dataclasses.replace(TINY, seeds=(1, 2))


@pytest.mark.parametrize(
    ("change", "message"),
    [({"tasks": ("cifar",), "shots": ()}, "unknown offline task 'cifar'"),
     ({"conv_tasks": ("svhn",)}, "unknown offline task 'svhn'"),
     ({"budgets": (0, 100)}, r"budgets \(GLoRA's parameter budgets\) must be >= 1")],
)  # fmt: skip
def test_settings_refuse_tasks_off_the_offline_ones_and_empty_budgets(
    change: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TINY, **change)


#: --set options that give some run a config error, and the error.
BAD_CONFIG_SETS = [
    ("learning_rates=(-1.0,)", "linear-lr-1-s0 a bad config: learning_rate must be > 0"),
    ("learning_rates=(1e-6, 1e-3)", "min_lr 1e-05 exceeds learning_rate 1e-06"),
    ("methods=('linear', 'glora', 'dora')", "dora-lr0.0001-s0 a bad config: unknown method 'dora'"),
    ("glora_space=huge", "glora-b100000-lr0.0001-s0 a bad config: unknown GLoRA space size 'huge'"),
]  # fmt: skip


@pytest.mark.parametrize(("assignment", "message"), BAD_CONFIG_SETS)
@pytest.mark.parametrize("command", [["run", "--workers", "2"], ["run", "--dry-run"], ["run"]])
def test_settings_that_give_a_run_a_bad_config_are_refused_before_any_step(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    assignment: str,
    message: str,
    command: list[str],
) -> None:
    """Not by the worker that comes to the run: its death left the others waiting forever."""
    steps: list[str] = []
    for module, name in [(suite_run, "prepare"), (offline_suite, "launch_workers"),
                         (suite_run, "execute"), (offline_suite, "print_plan")]:  # fmt: skip
        monkeypatch.setattr(module, name, lambda *a, name=name, **k: steps.append(name))
    with pytest.raises(ValueError, match=re.escape(message)):
        offline_suite.main([*_argv(command, tmp_path), f"--set={assignment}"])
    assert steps == []


def test_execute_refuses_a_bad_config_before_any_run(tmp_path: Path) -> None:
    calls: list[str] = []
    settings = dataclasses.replace(TINY, learning_rates=(1e-3, -1.0))
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        execute(settings, prepared_assets(tmp_path), tmp_path / "runs",
                runner=fake_runner({1e-3: 0.5}, calls), poll_s=0.0)  # fmt: skip
    assert calls == [] and not (tmp_path / "runs").exists()


def test_a_run_whose_config_fails_in_a_worker_is_recorded_failed_and_nobody_waits_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers on one claims folder: the first claims a run whose config fails (a check
    the settings could not foresee); it records the failure and goes on, and the second finds
    the plan complete instead of waiting (until its deadline) for the claimed run."""
    bad = "main-digits-dinov2-s14-linear-lr0.0001-s0"
    real = suite_run.run_config

    def run_config(run: Run, *args: Any) -> ExperimentConfig:
        if run.run_id == bad:
            raise ValueError("a config error")
        return real(run, *args)

    monkeypatch.setattr(suite_run, "run_config", run_config)
    assets, runs, claims = prepared_assets(tmp_path), tmp_path / "runs", tmp_path / "claims"
    runner = fake_runner({1e-4: 0.6, 1e-3: 0.7}, [])
    first = execute(TINY, assets, runs, runner=runner, poll_s=0.0, claims=claims)
    assert bad in first
    assert finished(runs)[bad] == {"failed": "ValueError: a config error"}
    started = time.monotonic()
    second = execute(TINY, assets, runs, runner=runner, poll_s=0.01, claims=claims,
                     deadline_s=5.0)  # fmt: skip
    assert second == [] and time.monotonic() - started < 4.0
    results = finished(runs)
    assert not [r for r in plan(TINY, results) if r.run_id not in results]


@pytest.mark.parametrize("field", ["budgets", "learning_rates", "seeds", "tasks", "shots"])
def test_settings_refuse_a_value_given_twice(field: str) -> None:
    values = getattr(TINY, field)
    with pytest.raises(ValueError, match=f"{field} holds a value twice"):
        dataclasses.replace(TINY, **{field: (*values, values[-1])})


@pytest.mark.parametrize(
    ("count", "label"),
    [(450_000, "0.45"), (451_000, "0.451"), (100_000, "0.10"), (2_000_000, "2.00"),
     (1_234_567, "1.234567"), (0, "0.00")],
)  # fmt: skip
def test_budget_labels_name_the_budget_exactly(count: int, label: str) -> None:
    assert millions(count) == label


def glora_id(budget: int, seed: int) -> str:
    return Run("main", "digits", "dinov2-s14", "glora", 1e-4, seed, budget=budget).run_id


def test_rows_take_train_time_from_their_supernet_and_search_time_from_every_seed() -> None:
    results = full_results()
    results[glora_id(100_000, 0)]["train_seconds"] = 100.0  # also the 0.20M row's supernet
    results[glora_id(100_000, 1)]["search"]["seconds"] = 4.0
    rows = {r.label: r for r in summarize(TINY, results) if r.study == "main"}
    assert rows["GLoRA ≤0.20M"].train_s == 100.0
    assert rows["GLoRA ≤0.10M"].train_s == np.mean([100.0, 3.0])
    assert rows["GLoRA ≤0.10M"].search_s == np.mean([2.0, 4.0])


def test_a_later_budget_whose_supernet_run_failed_shows_its_own_train_time() -> None:
    results = full_results()  # seed 2's first-budget run failed: its second budget trained
    results[glora_id(100_000, 0)]["train_seconds"] = 100.0
    results[glora_id(200_000, 2)] = fake_result(val=0.7, test=0.9, params=200_000, search=True)
    results[glora_id(200_000, 2)]["train_seconds"] = 7.0
    row = next(r for r in summarize(TINY, results) if r.label == "GLoRA ≤0.20M")
    assert row.seeds == (0, 2) and row.train_s == np.mean([100.0, 7.0])


def test_a_row_whose_seeds_all_failed_is_reported_failed() -> None:
    results = full_results()
    results[glora_id(200_000, 0)] = {"failed": "NonFiniteLossError: inf"}
    rows = summarize(TINY, results)
    (row,) = [r for r in rows if r.label == "GLoRA ≤0.20M"]
    assert (row.seeds, row.test, row.failed) == ((), (), ("NonFiniteLossError: inf",))
    assert percent(row) == "failed"
    report = markdown(TINY, rows, results)
    assert "| GLoRA ≤0.20M | failed |" in report
    (detail,) = [line for line in report.splitlines() if "| GLoRA ≤0.20M | 800 |" in line]
    assert detail.endswith("| failed | – | – | – | – |") and "nan" not in detail


def one_seed_row(study: str, task: str, method: str, accuracy: float = 0.5) -> Row:
    """A report row of one finished seed."""
    backbone = "efficientnet-lite0" if study == "conv" else "dinov2-s14"
    return Row(
        study, task, backbone, method, None, None, 1e-3, (0,), (accuracy,), 10.0, 7, 3.0, 0.0, ()
    )


def test_the_accuracy_matrix_orders_tasks_as_the_settings_do() -> None:
    settings = dataclasses.replace(TINY, tasks=("mnist5k", "digits"))
    rows = [
        one_seed_row("main", "digits", "linear", 0.5),
        one_seed_row("main", "mnist5k", "linear", 0.25),
    ]
    text = markdown(settings, rows, {})
    assert "| method | mnist5k | digits |" in text
    assert "| linear probe | 25.0 (n=1) | 50.0 (n=1) |" in text


@pytest.mark.parametrize("main_tasks", [("digits", "mnist5k"), ("fashion_mnist",)])
def test_the_conv_matrix_orders_tasks_as_conv_tasks_do(main_tasks: tuple[str, ...]) -> None:
    """In conv_tasks' order, also for conv tasks outside the main study's (where a set's order,
    which changes with the process's string hashing, set it before)."""
    settings = dataclasses.replace(
        TINY, tasks=main_tasks, conv_tasks=("mnist5k", "digits"), shots=()
    )
    rows = [one_seed_row("conv", task, "linear") for task in ("digits", "mnist5k")]
    assert "| method | mnist5k | digits |" in markdown(settings, rows, {})


def test_accuracy_plot_leaves_out_rows_without_a_finished_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures: list[Figure] = []
    monkeypatch.setattr(
        suite_report, "Figure", lambda **kw: figures.append(Figure(**kw)) or figures[-1]
    )
    results = full_results()
    results[glora_id(200_000, 0)] = {"failed": "NonFiniteLossError: inf"}
    plot_accuracy_vs_params(summarize(TINY, results), tmp_path / "acc.png")
    legend = figures[0].axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["linear probe", "GLoRA ≤0.10M"]


def test_accuracy_plot_gives_each_method_one_colour_and_a_legend_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A method missing from the first task's panel keeps its colour in the others and is in
    the legend."""
    figures: list[Figure] = []
    monkeypatch.setattr(
        suite_report, "Figure", lambda **kw: figures.append(Figure(**kw)) or figures[-1]
    )
    panels = (("digits", "lora"), ("mnist5k", "linear"), ("mnist5k", "lora"))
    rows = [one_seed_row("main", task, method) for task, method in panels]
    plot_accuracy_vs_params(rows, tmp_path / "acc.png")
    colours: dict[str, set[str]] = {}
    for axis in figures[0].axes:
        for bars in axis.containers:
            colours.setdefault(bars.get_label(), set()).add(to_hex(bars.lines[0].get_color()))
    assert list(map(len, colours.values())) == [1, 1] and len(set.union(*colours.values())) == 2
    legend = figures[0].axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["LoRA r=8", "linear probe"]


# ----------------------------------------------------------------------------- command line


def test_pack_assets_checks_the_few_shot_sets_of_the_few_shot_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import experiments.suite_data
    import experiments.weights

    def touch(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        return path

    checked: dict[str, tuple[int, ...]] = {}
    monkeypatch.setattr(
        experiments.suite_data, "offline_pack", lambda task, path, *, seed: touch(path)
    )
    monkeypatch.setattr(
        experiments.suite_data, "check_pack",
        lambda path, task, *, seed, shots: checked.__setitem__(task, shots),
    )  # fmt: skip
    monkeypatch.setattr(experiments.suite_data, "half_precision_copy", lambda src, dst: touch(dst))
    monkeypatch.setattr(experiments.weights, "cached", lambda backbone: tmp_path / backbone)
    settings = dataclasses.replace(TINY, tasks=("digits", "mnist5k"), shots=(2, 4))
    offline_suite.pack_assets(settings, Assets(tmp_path / "a", tmp_path / "d"))
    assert checked == {"digits": (2, 4), "mnist5k": ()}


#: ``--set`` options that make ``SuiteSettings()`` into TINY.
TINY_SETS = [
    "tasks=('digits',)", "methods=('linear', 'glora')", "conv_tasks=()", "conv_methods=()",
    "fewshot_task=digits", "shots=(2,)", "fewshot_methods=('linear',)",
    "learning_rates=(0.0001, 0.001)", "budgets=(100000, 200000)",
]  # fmt: skip


def test_dry_run_marks_finished_runs_and_reads_derived_packs_under_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert override(SuiteSettings(), TINY_SETS) == TINY
    runs = tmp_path / "runs"
    results = phase_one_results((0.5, 0.6), (0.8, 0.2))
    for run_id, result in results.items():
        (runs / run_id).mkdir(parents=True)
        (runs / run_id / "result.json").write_text(json.dumps(result))
    argv = ["run", "--dry-run", "--runs", str(runs), "--assets", str(tmp_path / "a"),
            *(f"--set={item}" for item in TINY_SETS)]  # fmt: skip
    assert offline_suite.main(argv) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    status = {line[1]: line[0] for line in lines if line[0] != "#"}
    assert status == {
        r.run_id: "done" if r.run_id in results else "todo" for r in plan(TINY, results)
    }
    assert sorted(k for k, v in status.items() if v == "done") == sorted(results)
    few = [line for line in lines if line[1].startswith("fewshot-")]
    pack = runs / "derived" / "data" / "digits-2shot.npz"
    assert few and all(f"data.task={pack}" in line for line in few)


def test_workers_each_run_one_process_of_the_part_on_fresh_claims(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands: list[list[str]] = []

    class Worker:
        def __init__(self, command: list[str], **kwargs: Any) -> None:
            commands.append(command)

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(offline_suite.subprocess, "Popen", Worker)
    claims = tmp_path / "claims"
    claims.mkdir()
    (claims / "a-run-of-an-earlier-launch").touch()
    args = offline_suite.parse_args(
        ["run", "--workers", "3", "--runs", str(tmp_path / "runs"), "--claims", str(claims),
         "--part", "2/3", "--set", "epochs=2", "--deadline-s", "60"]
    )  # fmt: skip
    assert offline_suite.launch_workers(args, poll_s=0.0) == 0
    assert len(commands) == 3 and all(command == commands[0] for command in commands)
    command = commands[0]
    after = {flag: command[command.index(flag) + 1] for flag in ("--workers", "--claims", "--part")}
    assert after == {"--workers": "1", "--claims": str(claims), "--part": "2/3"}
    assert "--set=epochs=2" in command and "60.0" in command
    assert not claims.exists() or not any(claims.iterdir())
    logs = sorted(p.name for p in (tmp_path / "runs" / "logs").iterdir())
    assert logs == ["worker0.log", "worker1.log", "worker2.log"]


@pytest.mark.parametrize("holds", ["a result folder", "a file with bytes"])
def test_a_claims_folder_holding_more_than_claims_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, holds: str
) -> None:
    runs = tmp_path / "runs"
    kept = runs / "main-digits-linear-lr0.001-s0" / "result.json"
    if holds == "a result folder":
        kept.parent.mkdir(parents=True)
    else:
        kept = runs / "notes.txt"
        runs.mkdir()
    kept.write_text("{}")
    (runs / "a-claim").touch()
    started: list[str] = []
    monkeypatch.setattr(suite_run, "prepare", lambda *a, **k: started.append("prepare"))
    monkeypatch.setattr(offline_suite.subprocess, "Popen", lambda *a, **k: started.append("run"))
    argv = [
        "run",
        "--workers",
        "2",
        "--runs",
        str(runs),
        "--claims",
        str(runs),
        "--set",
        "epochs=2",
    ]
    with pytest.raises(
        ValueError, match=rf"^--claims {runs} holds more than claims .* would delete"
    ):
        offline_suite.main(argv)
    assert started == [] and kept.read_text() == "{}" and (runs / "a-claim").exists()


def test_a_refused_report_writes_nothing(tmp_path: Path) -> None:
    """Neither for runs of other settings nor for a doc that lost a marker of its section."""
    assets, runs = prepared_assets(tmp_path), tmp_path / "runs"
    smoke = dataclasses.replace(TINY, epochs=2, seeds=(0,))
    execute(smoke, assets, runs, runner=fake_runner({1e-4: 0.6, 1e-3: 0.7}, []), poll_s=0.0)
    doc, figures = tmp_path / "doc.md", tmp_path / "figures"
    with pytest.raises(ValueError, match="made with other settings"):
        offline_suite.write_report(TINY, assets, runs, doc=doc, figures=figures)
    assert not doc.exists() and not figures.exists()
    doc.write_text(f"{BEGIN}\nhand-written\n")
    with pytest.raises(ValueError, match="markers of the generated section"):
        offline_suite.write_report(smoke, assets, runs, doc=doc, figures=figures)
    assert doc.read_text() == f"{BEGIN}\nhand-written\n" and not figures.exists()
    doc.unlink()
    offline_suite.write_report(smoke, assets, runs, doc=doc, figures=figures)
    assert doc.read_text().count(BEGIN) == 1


def _argv(command: list[str], tmp_path: Path) -> list[str]:
    """``command`` on TINY's settings, assets in tmp_path/a and runs in tmp_path/runs."""
    paths = ["--assets", str(tmp_path / "a"), "--runs", str(tmp_path / "runs")]
    return [*command, *paths, *(f"--set={item}" for item in TINY_SETS)]


@pytest.mark.parametrize(
    ("command", "called", "code"),
    [
        (["pack"], ["pack_assets"], 0),
        (["prepare"], ["prepare"], 0),
        (["run", "--workers", "3"], ["prepare", "launch_workers"], 7),  # the workers' code
    ],
)
def test_each_command_runs_its_step_on_the_settings_of_its_set_options(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    called: list[str],
    code: int,
) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        offline_suite, "pack_assets", lambda *args: calls.append(("pack_assets", *args))
    )
    monkeypatch.setattr(suite_run, "prepare", lambda *args: calls.append(("prepare", *args)))

    def launch_workers(args: Any) -> int:
        calls.append(("launch_workers", args.workers, args.overrides))
        return 7

    monkeypatch.setattr(offline_suite, "launch_workers", launch_workers)
    assert offline_suite.main(_argv(command, tmp_path)) == code
    runs = tmp_path / "runs"
    assets = Assets(tmp_path / "a", runs / "derived")
    step = {
        "pack_assets": ("pack_assets", TINY, assets),
        "prepare": ("prepare", TINY, assets, runs),
        "launch_workers": ("launch_workers", 3, TINY_SETS),
    }
    assert calls == [step[name] for name in called]


@pytest.mark.parametrize(
    ("options", "updates"),
    [
        ([], [("jax_default_matmul_precision", "highest")]),
        (["--matmul-precision", "default", "--compile-cache", "/c", "--part", "2/3",
          "--deadline-s", "60", "--claims", "/claims"],
         [("jax_default_matmul_precision", "default"), ("jax_compilation_cache_dir", "/c")]),
    ],
)  # fmt: skip
def test_run_executes_its_part_under_the_jax_settings_given(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    updates: list[tuple[str, str]],
) -> None:
    import jax

    update, made = jax.config.update, []

    def record(name: str, value: Any) -> None:  # the two of the command: recorded, not made
        if name in ("jax_default_matmul_precision", "jax_compilation_cache_dir"):
            made.append((name, value))
        else:
            update(name, value)

    monkeypatch.setattr(jax.config, "update", record)
    executed: list[tuple[Any, ...]] = []

    def execute(*args: Any, **kwargs: Any) -> list[str]:
        executed.append((*args, kwargs))
        return ["run-a", "run-b"]

    monkeypatch.setattr(suite_run, "execute", execute)
    assert offline_suite.main(_argv(["run", *options], tmp_path)) == 0
    assert made == updates
    runs = tmp_path / "runs"
    given = {"part": (1, 1), "deadline_s": None, "claims": None}
    if options:
        given = {"part": (2, 3), "deadline_s": 60.0, "claims": Path("/claims")}
    assert executed == [(TINY, Assets(tmp_path / "a", runs / "derived"), runs, given)]
    part = "2/3" if options else "1/1"
    assert capsys.readouterr().out == f"part {part} ran 2 runs\n"


def test_the_module_command_reports_bad_input_without_a_traceback(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-m", "experiments.offline_suite", "report", "--runs", str(runs),
         "--doc", str(tmp_path / "doc.md")],
        capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: ValueError: no finished runs under {runs}: give the --runs of `python -m "
        "experiments.offline_suite run`, or run it first"
    )
    assert "Traceback" not in done.stderr and not (tmp_path / "doc.md").exists()


def test_the_module_command_refuses_a_bad_learning_rate_before_starting_workers(
    tmp_path: Path,
) -> None:
    """This command used to hang: a worker died on the run's config, the other waited on it."""
    runs = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-m", "experiments.offline_suite", "run", "--workers", "2",
         "--runs", str(runs), "--assets", str(tmp_path / "a"), "--set",
         "learning_rates=(-1.0,)"],
        capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "error: ValueError: these settings give run main-fashion_mnist-dinov2-s14-linear-lr-1-s0 "
        "a bad config: learning_rate must be > 0 and finite, got -1.0"
    )
    assert "Traceback" not in done.stderr and not (runs / "logs").exists()
