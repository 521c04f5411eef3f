"""A whole VTAB-1k-shaped task end to end, in wall time: supernet training, search, test, merge.

    python -m bench.end_to_end --task data.npz --out e2e.json                 # the paper's recipe
    python -m bench.end_to_end --task data.npz --set train.epochs=100 ...     # any override

The recipe is ``experiments.configs.paper(--like)`` (ViT-B/16 at 224, AdamW, 500 epochs of
train800 at batch 64, the paper's full evolutionary search on val200, test, merged-model check)
with the data replaced by ``--task`` (an images + labels npz, split the VTAB-1k way: train800 /
val200 / test) and, unless ``--set backbone.name=...`` says otherwise, random ViT-B/16 weights
(same architecture and FLOPs as the pretrained checkpoint, which is not available offline):
the time does not depend on the pixels, the accuracy then means nothing and is not reported as
a result. ``pipeline.run`` does everything; the wall time includes loading and resizing the data,
every compilation, training, search, test and the merged-model check. The recipe computes in
float32 with XLA's attention; the ``e2e`` row of ``bench.run`` (``bench_end_to_end``) uses the
training rows' settings instead, as ``--set backbone.dtype=bfloat16
--set backbone.attention=cudnn`` does here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.results import Row
from bench.sizes import BenchSize
from experiments.command_line import exit_on_error
from experiments.config import DataConfig, ExperimentConfig, override
from experiments.configs import paper
from experiments.methods import METHODS
from experiments.vtab_table import PAPER_LR


def vtab_shaped_config(
    task: str, *, like: str = "cifar", method: str = "glora", sets: Sequence[str] = ()
) -> ExperimentConfig:
    """The paper's recipe for the VTAB-1k task ``like`` on ``task`` (npz), then ``sets``."""
    config = paper(like, method=method)
    config = dataclasses.replace(
        config,
        data=DataConfig(task=task, source="npz"),
        backbone=dataclasses.replace(config.backbone, name="vit-b16-random"),
    )
    return override(config, sets)


def run_end_to_end(config: ExperimentConfig, workdir: Path) -> dict[str, Any]:
    """``pipeline.run`` under a wall clock: its result plus ``end_to_end_seconds``."""
    from experiments import pipeline  # heavy: jax, models

    started = time.perf_counter()
    result = pipeline.run(config, workdir)
    return {**result, "end_to_end_seconds": time.perf_counter() - started}


def train_summary(result: dict[str, Any]) -> str:
    """'train T s' with, when logged, the first step (its compilation) and the steady rate: the
    part of T that is neither is T - first step - steps / rate (checkpoints, evaluation, ...)."""
    text = f"train {result['train_seconds']:.0f} s"
    first = result.get("train_first_step_seconds")
    if first is not None:
        text += f", first step {first:.0f} s"
    rate = result.get("train_steps_per_sec")
    return text if rate is None else f"{text}, then {rate:.1f} steps/s"


def stage_summary(result: dict[str, Any]) -> str:
    """'stages: data 3 s, backbone 1 s, train 229 s, ...' from ``stage_seconds`` (in order)."""
    from experiments.pipeline import stage_text  # heavy: jax, models

    return "stages: " + stage_text(result.get("stage_seconds") or {})


#: The end-to-end row's name: one GLoRA task, the paper's recipe, VTAB-1k's split sizes.
E2E_ROW = "jax/e2e/glora-vtab1k-task"


def vtab_shaped_npz(path: Path, *, test_size: int, num_classes: int = 100, seed: int = 0) -> Path:
    """Random uint8 images (32x32x3, resized by the pipeline like any task) and labels:
    800 + 200 + ``test_size`` examples, the shape of a VTAB-1k task (time does not depend on
    the pixels). Written to ``path``."""
    rng = np.random.default_rng(seed)
    n = 1000 + test_size
    np.savez(
        path,
        images=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
        labels=(np.arange(n) % num_classes).astype(np.int32),
    )
    return path


def bench_end_to_end(size: BenchSize, workdir: Path, *, attention: str | None) -> Row:
    """The row: wall seconds of ``pipeline.run`` on a VTAB-shaped random task (``size``'s
    overrides of the paper's recipe and its search settings), search and test included, with
    the training rows' compute settings: bf16 compute and ViT attention ``attention``."""
    workdir.mkdir(parents=True, exist_ok=True)
    task = vtab_shaped_npz(workdir / "task.npz", test_size=size.e2e_test_size)
    config = vtab_shaped_config(str(task), sets=size.e2e_sets)
    backbone = dataclasses.replace(config.backbone, dtype="bfloat16", attention=attention)
    config = dataclasses.replace(config, backbone=backbone, search=size.search)
    result = run_end_to_end(config, workdir / "run")
    from experiments.pipeline import images_apart  # imported by run_end_to_end already

    search = result.get("search", {})
    n = result["num_test"]
    apart = images_apart(result["test_accuracy"], result["merged_test_accuracy"], num_test=n)
    return Row(
        name=E2E_ROW,
        batch=1,
        step_s=result["end_to_end_seconds"],
        unit="task",
        note=(
            f"{train_summary(result)} ({config.train.epochs} epochs of 800), search "
            f"{search.get('seconds', 0.0):.0f} s ({search.get('candidates_evaluated', 0)} cand.), "
            f"test on {n} (merged and adapted model {apart} images apart); "
            f"{stage_summary(result)}; random-pixel task, VTAB-1k "
            f"sizes; bf16, attention {attention or 'einsum'}"
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.end_to_end", description=(__doc__ or "").splitlines()[0]
    )
    p.add_argument("--task", required=True, help="images + labels npz (source npz)")
    p.add_argument(
        "--like", default="cifar", choices=sorted(PAPER_LR),
        help="VTAB-1k task whose paper lr is used",
    )  # fmt: skip
    p.add_argument("--method", default="glora", choices=METHODS)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--workdir", type=Path, default=Path("bench-e2e"))
    p.add_argument("--out", type=Path, default=Path("bench-e2e.json"))
    args = p.parse_args(argv)
    if not Path(args.task).is_file():
        p.error(f"--task {args.task}: no such file (give an images + labels npz)")
    if args.workdir.is_dir() and any(args.workdir.iterdir()):
        # pipeline.run resumes the run a workdir holds: only what it left would be timed
        p.error(
            f"--workdir {args.workdir} holds an earlier run, which would be resumed and only "
            "its rest timed: give a new or empty folder"
        )
    config = vtab_shaped_config(args.task, like=args.like, method=args.method, sets=args.sets)
    args.out.parent.mkdir(parents=True, exist_ok=True)  # fails here, not after the run
    result = run_end_to_end(config, args.workdir)
    command = "python -m bench.end_to_end " + " ".join(sys.argv[1:] if argv is None else argv)
    args.out.write_text(json.dumps({**result, "command": command}, indent=2, default=str))
    search = result.get("search", {})
    print(
        f"end to end: {result['end_to_end_seconds']:.1f} s ({train_summary(result)},"
        f" search {search.get('seconds', 0.0):.1f} s over {search.get('candidates_evaluated', 0)}"
        f" candidates, {result['num_test']} test images; {stage_summary(result)});"
        f" wrote {args.out}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    exit_on_error(main)
