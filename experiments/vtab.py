"""``python -m experiments.vtab``: fine-tune, search, merge and report, per task or all of VTAB-1k.

    python -m experiments.vtab                               # built-in default (no download)
    python -m experiments.vtab --adapter=flora --task=digits
    python -m experiments.vtab --adapter=glora --tasks=all --data_dir=$TFDS_DATA_DIR \\
        --checkpoint=ViT-B_16.npz                            # the GLoRA paper's VTAB-1k runs
    python -m experiments.vtab --set train.epochs=100 --set search.param_budget=500000
    python -m experiments.vtab --adapter=lora --task=cifar --dry_run   # every setting, no run

The preset follows the task: VTAB-1k tasks get the paper's recipe ("paper"), offline tasks and
your own data (``--source=npz|folder``) the CPU-sized "quickstart"; ``--preset=quickstart`` runs a
VTAB-1k task (from tfds) with that recipe too (``--preset=paper`` takes VTAB-1k tasks only: its
learning rates are the paper's per task).
Results: <workdir>/<task>/result.json (a path's last part for your own data), plots,
merged.npz, and with VTAB-1k tasks (one is enough) <workdir>/vtab_table.md beside the paper's
rows: every VTAB-1k task finished in the workdir, by this command or an earlier one, a row per
method, backbone and test limit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import jax

from experiments import pipeline
from experiments.backbones import NATIVE_NORMALIZATION, PATCH, VIT_ONLY_OPTIONS, BackboneConfig
from experiments.command_line import run_main, spellings
from experiments.config import (
    ExperimentConfig,
    as_assignments,
    check_method_fits_backbone,
    override,
    set_values,
)
from experiments.configs import PRESETS, preset
from experiments.data.load import PATH_SOURCES
from experiments.data.offline import OFFLINE_TASKS
from experiments.local_files import local_path
from experiments.methods import METHODS, check_knobs
from experiments.training.sharding import initialize_distributed, is_main_process
from experiments.vtab_table import PAPER_BACKBONE, TASKS, group_means, markdown_table
from peft_core.atomic_files import write_text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.vtab",
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join((__doc__ or "").splitlines()[1:]),
    )
    parser.add_argument("--adapter", default="glora", choices=METHODS)
    which = parser.add_mutually_exclusive_group()  # one destination: the last would win
    for flag in ("--task", "--tasks"):
        which.add_argument(
            flag,
            dest="tasks",
            default="fashion_mnist",
            help="a task, a comma-separated list, or 'all' (the 19 VTAB-1k tasks)",
        )
    parser.add_argument("--preset", choices=PRESETS, default=None)
    parser.add_argument(
        "--source", default=None, help="tfds | noah | offline | npz | folder (default: by preset)"
    )
    parser.add_argument(*spellings("--data_dir"), default=None)
    parser.add_argument("--checkpoint", default=None, help="backbone weights (.npz)")
    parser.add_argument("--workdir", default="runs/vtab")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field (repeatable)",
    )
    parser.add_argument(
        *spellings("--dry_run"),
        action="store_true",
        help="check every task's config and workdir, print each setting as --set takes it, "
        "and stop before any data or weights load",
    )
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() first (multi-host pods)",
    )
    args = parser.parse_args(argv)
    try:
        task_names(args.tasks)
    except ValueError as error:
        parser.error(str(error))
    for flag in ("source", "data_dir", "checkpoint", "workdir"):  # "" would read as not given
        if getattr(args, flag) is not None and not getattr(args, flag).strip():
            parser.error(f"--{flag} is empty: give a value, or leave the flag out")
    for flag in ("data_dir", "checkpoint", "workdir"):  # bash leaves ~ in --flag=~/x
        if getattr(args, flag) is not None:
            setattr(args, flag, os.path.expanduser(getattr(args, flag)))
    return args


def task_names(text: str) -> list[str]:
    """--task/--tasks' value as a list of tasks ('all': the VTAB-1k tasks), items stripped;
    ValueError for an empty item (which would read as a task named '')."""
    if text.strip() == "all":
        return list(TASKS)
    tasks = [task.strip() for task in text.split(",")]
    if not any(tasks):
        raise ValueError(f"--task/--tasks names no task: {text!r}")
    if not all(tasks):
        raise ValueError(f"--task/--tasks holds an empty item (a stray comma?): {text!r}")
    return tasks


def task_config(args: argparse.Namespace, task: str) -> ExperimentConfig:
    sets = set_values(args.overrides)  # the data's source and folder, checked with the preset's
    source = args.source or sets.get("data.source")
    if source in PATH_SOURCES:  # the task is the user's data's path
        task = os.path.expanduser(task)
    # own data, like the offline tasks, defaults to "quickstart" (the paper's recipe knows only
    # the VTAB-1k tasks' learning rates)
    own = task in OFFLINE_TASKS or source in PATH_SOURCES
    name = args.preset or ("quickstart" if own else "paper")
    data_dir = args.data_dir or sets.get("data.data_dir")
    config = preset(name, task, method=args.adapter, source=source, data_dir=data_dir)
    if args.checkpoint:
        backbone = dataclasses.replace(config.backbone, checkpoint=args.checkpoint)
        config = dataclasses.replace(config, backbone=backbone)
    if sets.get("backbone.name", config.backbone.name) not in PATCH:  # no transformer blocks
        config = without_vit_options(config, keep=sets)
    preset_config = config
    config = override(config, args.overrides)
    for key, value, flag, given in (
        ("data.task", config.data.task, "--task", task),
        ("method.name", config.method.name, "--adapter", args.adapter),
    ):
        if value != given:
            raise ValueError(
                f"--set {key}={value} disagrees with {flag}={given}, which names the run's "
                f"results folder and table row: choose it with {flag}"
            )
    for key, value, flag, given in (
        ("data.source", config.data.source, "--source", args.source),
        ("data.data_dir", config.data.data_dir, "--data_dir", args.data_dir),
        ("backbone.checkpoint", config.backbone.checkpoint, "--checkpoint", args.checkpoint),
    ):
        if given and value != given:
            raise ValueError(f"--set {key}={value} disagrees with {flag}={given}: give it once")
    keys = [a.partition("=")[0].strip() for a in args.overrides]
    check_set_keys_apply(preset_config, config, keys)
    knobs = [k.removeprefix("method.") for k in keys if k.startswith("method.")]
    check_knobs(config.method.name, knobs)
    check_method_fits_backbone(config.method, config.backbone.name, knobs)
    supernet_keys = [k for k in keys if pipeline.supernet_only(k)]
    if not config.method.searchable and supernet_keys:  # a warning: one --set list may serve
        logging.getLogger(__name__).warning(  # every method of a sweep
            "%s ignored: only glora trains a supernet and searches it, %s does neither",
            ", ".join(supernet_keys), config.method.name,
        )  # fmt: skip
    return config


def without_vit_options(config: ExperimentConfig, keep: Mapping[str, Any]) -> ExperimentConfig:
    """``config`` with the ViT-only backbone options (the quickstart's scan) at their defaults,
    except those set in ``keep`` (--set): a preset's options for its ViT give way when --set picks
    a backbone without transformer blocks; set by hand, BackboneConfig refuses them."""
    defaults = BackboneConfig()
    reset = {k: getattr(defaults, k) for k in VIT_ONLY_OPTIONS if f"backbone.{k}" not in keep}
    return dataclasses.replace(config, backbone=dataclasses.replace(config.backbone, **reset))


def check_set_keys_apply(
    preset: ExperimentConfig, config: ExperimentConfig, keys: list[str]
) -> None:
    """ValueError for a --set key the run would ignore, or one that leaves a preset's setting
    meant for another value in force: train.epochs beside train.total_steps, a warm-up start
    without warm-up, and a backbone other than the preset's fed the preset's input scaling."""
    if "train.epochs" in keys and config.train.total_steps is not None:
        raise ValueError(
            f"train.epochs would be ignored: train.total_steps={config.train.total_steps} sets "
            "the run's length"
        )
    if "train.optim.warmup_start_lr" in keys and config.train.optim.warmup_epochs == 0:
        raise ValueError(
            "train.optim.warmup_start_lr would be ignored: train.optim.warmup_epochs is 0"
        )
    scaling, name = preset.backbone.normalization, config.backbone.name
    if (
        "backbone.normalization" not in keys
        and name != preset.backbone.name
        and scaling not in ("native", NATIVE_NORMALIZATION.get(name))
    ):
        raise ValueError(
            f"backbone.normalization={scaling!r} is the preset's input scaling for "
            f"{preset.backbone.name}, not {name}'s own: set backbone.normalization=native for "
            f"{name}'s, or ={scaling} to keep it"
        )


def task_workdir(workdir: pathlib.Path, task: str) -> pathlib.Path:
    """Where ``task``'s results go: ``workdir/<task>``, for a path (``--source=npz`` or
    ``folder``) ``workdir/<its last part>`` once resolved (``.`` names the current folder),
    never the data's own path."""
    return workdir / pathlib.Path(os.path.expanduser(task)).resolve().name


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    initialize_distributed(args.distributed)
    logging.getLogger(__name__).info(devices_line())
    tasks = task_names(args.tasks)
    workdir = local_path(args.workdir, what="--workdir")
    outs = [task_workdir(workdir, task) for task in tasks]
    shared = sorted({str(out) for out in outs if outs.count(out) > 1})
    if shared:
        raise SystemExit(
            f"error: tasks of --tasks would share the results folder {', '.join(shared)}: name "
            "each task once, and give data files or folders different names (or run them with "
            "separate --workdir)"
        )
    configs = [task_config(args, task) for task in tasks]  # every task's errors before any runs
    for config, out in zip(configs, outs, strict=True):
        pipeline.check_runs_here(config, out)
    if args.dry_run:
        for task, out, config in zip(tasks, outs, configs, strict=True):
            pipeline.check_same_experiment(config, out)  # a workdir of another config: refused
            print(f"== {task}: {args.adapter} on {config.backbone.name} -> {out}")
            unread = pipeline.unread_settings(config)
            lines = [a for a in as_assignments(config) if a.partition("=")[0] not in unread]
            print("\n".join(f"  {line}" for line in lines))
            if unread:
                print(f"  ({len(unread)} settings {args.adapter} does not read left out)")
        return 0
    results = {}
    for task, out, config in zip(tasks, outs, configs, strict=True):
        print(f"== {task}: {args.adapter} on {config.backbone.name} -> {out}")
        results[task] = pipeline.run(config, out)
        print(summary(results[task], out / pipeline.RESULT_NAME))
    # your own data in a folder named as a VTAB-1k task (--source=folder --task=dtd) is not it
    pairs = zip(tasks, configs, strict=True)
    ran = {t: results[t] for t, c in pairs if is_vtab_task(t, c.data.source)}
    if ran:
        vtab = saved_vtab_results(workdir) | ran
        table = markdown_table(table_rows(vtab), method=args.adapter)
        if is_main_process():
            write_text(workdir / "vtab_table.md", table + "\n")
        print(table)
    return 0


def devices_line() -> str:
    """What this run computes on; on the CPU, how to make a GPU or TPU that JAX could not open
    (another process may hold it) an error instead of a quiet fallback."""
    kinds = sorted({d.device_kind for d in jax.devices()})
    line = (
        f"devices: {jax.device_count()} x {', '.join(kinds)} ({jax.default_backend()} backend, "
        f"{jax.process_count()} process{'es' if jax.process_count() > 1 else ''})"
    )
    if jax.default_backend() == "cpu":
        line += (
            "; JAX falls back to the CPU when it cannot open a GPU or TPU (e.g. one another "
            "process holds): JAX_PLATFORMS=tpu (or cuda) makes that an error"
        )
    return line


def summary(result: dict[str, Any], path: pathlib.Path) -> str:
    """Two lines on a finished task: accuracies, parameters, the searched subnet's val200 score,
    wall time per stage, and where ``result`` (the whole of it) was written."""
    r = result
    line = (
        f"{r['task']}: {r['method']} on {r['backbone']}: test {100 * r['test_accuracy']:.2f}% "
        f"(merged model {100 * r['merged_test_accuracy']:.2f}%, {r['num_test']:,} images), "
        f"{r['trainable_params']:,} trainable parameters + {r['head_params']:,} in the head"
    )
    if r.get("search"):
        line += f"; the searched subnet's val200 {100 * r['search']['val_accuracy']:.2f}%"
    stages = pipeline.stage_text(r["stage_seconds"])
    return f"{line}\n  {r['wall_seconds']:.0f} s ({stages}) -> {path}"


def saved_vtab_results(workdir: pathlib.Path) -> dict[str, dict]:
    """{VTAB-1k task: its result.json} of every task finished in ``workdir`` (by this command
    or an earlier one: the table grows as tasks are run one at a time); an older result.json
    without ``test_limit`` takes its config.json's."""
    found = {}
    for task in TASKS:
        path = task_workdir(workdir, task) / pipeline.RESULT_NAME
        if path.is_file():
            result = json.loads(path.read_text())
            config = path.parent / "config.json"
            data = json.loads(config.read_text())["data"] if config.is_file() else {}
            if not is_vtab_task(task, data.get("source")):  # own data in a folder of its name
                continue
            found[task] = result
            if "test_limit" not in result and config.is_file():  # older: its config's
                result["test_limit"] = data.get("test_limit")
    return found


def is_vtab_task(task: str, source: str | None) -> bool:
    """Whether ``task`` read from ``source`` is a VTAB-1k task, not your own data at a path of
    a VTAB-1k task's name (``--source=npz|folder``)."""
    return task in TASKS and source not in PATH_SOURCES


def table_rows(results: dict[str, dict]) -> dict[str, tuple[float, dict[str, float]]]:
    """One table row per method, backbone and ``data.test_limit`` among ``results`` ({task:
    result.json}) -> (trainable parameters in millions, {task: test top-1 %}); the parameters are
    averaged as the paper's table 1 averages them, over the group means (:func:`group_means`).

    A row is "<method> (ours)" on the paper's backbone (vit-b16) tested on whole test splits,
    else it says what differs from the paper's rows beside it: "<method> on <backbone> (ours)",
    "(ours, at most <n> test images)" for runs with ``data.test_limit`` n."""
    rows: dict[str, dict[str, dict]] = {}
    for task, result in results.items():
        rows.setdefault(row_name(result), {})[task] = result
    return {
        name: (
            group_means({t: r["trainable_params"] for t, r in runs.items()})["average"] / 1e6,
            {t: 100.0 * r["test_accuracy"] for t, r in runs.items()},
        )
        for name, runs in sorted(rows.items())
    }


def row_name(result: dict[str, Any]) -> str:
    """``result``'s row in the VTAB-1k table (:func:`table_rows`)."""
    name = result["method"]
    if result["backbone"] != PAPER_BACKBONE:
        name += f" on {result['backbone']}"
    if result.get("test_limit") is not None:
        return f"{name} (ours, at most {result['test_limit']:,} test images)"
    return f"{name} (ours)"


if __name__ == "__main__":
    run_main(main, resume_hint="rerun the same command (the same --workdir) to resume")
