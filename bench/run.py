"""Run the benchmark: PyTorch peers, then the JAX rows, one table with every row and the targets.

    python -m bench.run --suite=all                 # the GPU table (ViT-B/16, 224, bf16)
    python -m bench.run --suite=all --size=tiny     # the same code on a CPU in a few minutes

Each framework runs in its own process, one after the other, so neither holds device memory
while the other measures (JAX preallocates most of the GPU) and torch is imported only by
``bench.torch_peers``. Output: the Markdown table, the target checks (issue #5), rows that were
skipped or failed, and a JSON file (``--out``) with all of it plus the device and the command.
The exit status is 1 when a row or a whole process failed (the JSON's ``failed`` list is not
empty, or a process exited with an error), else 0.
JAX rows measured on a GPU get their FLOPs from ``bench.count_flops`` (a CPU process run
afterwards: the GPU backend's cost model reports none). Each process also leaves its rows
beside ``--out`` (``<out stem>.torch.json`` / ``.jax.json``, written row by row, so a run cut
short keeps what it measured).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.jax_train import SCANNED_SUITES, TRAINING_SUITES
from bench.options import add_size_options, chosen_size
from bench.peaks import peak_flops
from bench.report import merge_runs, render, with_flops
from bench.results import Row, save_rows
from bench.sizes import BenchSize
from bench.targets import evaluate_targets, judged
from experiments.command_line import exit_on_error, positive_int

SUITES = ("train", *SCANNED_SUITES, "infer", "search", "conv", "e2e", "scale", "torch")


def parse_suites(text: str) -> list[str]:
    """ "all" (SUITES) or a comma list of SUITES -> the list, in the order given, no repeats.

    The JAX suites run in this order; "torch" always runs first, in its own process.
    """
    wanted = list(SUITES) if text == "all" else [s.strip() for s in text.split(",")]
    unknown = sorted(set(wanted) - set(SUITES))
    if unknown:
        raise ValueError(f"unknown suites {unknown}; choose 'all' or from {SUITES}")
    return list(dict.fromkeys(wanted))


def torch_command(
    size: BenchSize, out: Path, *, train_batches: Sequence[int], only: str | None
) -> list[str]:
    """The ``bench.torch_peers`` command line for ``size``."""
    t = size.timing
    command = [
        sys.executable, "-m", "bench.torch_peers", "--json", str(out),
        "--model", size.torch_model, "--image-size", str(size.image_size),
        "--num-classes", str(size.num_classes),
        "--train-batches", *map(str, train_batches),
        "--infer-batches", *map(str, size.infer_batches),
        "--warmup", str(t.warmup), "--repeats", str(t.repeats), "--input-sets", str(t.input_sets),
        "--window", str(t.window), "--min-window-ms", str(t.min_window_s * 1e3),
    ]  # fmt: skip
    if size.torch_depth is not None:
        command += ["--depth", str(size.torch_depth)]
    return command + (["--only", only] if only else [])


def jax_commands(
    size: BenchSize, out: Path, *, suites: Sequence[str], attention: str, only: str | None,
    train_batches: Sequence[int], isolate: bool = False, autotune_logs: Path | None = None,
) -> list[list[str]]:  # fmt: skip
    """The ``bench.jax_suite`` command lines: one for every suite, or with ``isolate`` one whose
    training rows each run in a fresh process (``--isolate``, part ``<out stem>.jax-rows.json``;
    with ``autotune_logs``, each dumping XLA's autotuning there) and one for the other suites."""
    groups = [("jax", list(suites), False)]
    if isolate:
        training = [s for s in suites if s in TRAINING_SUITES]
        others = [s for s in suites if s not in TRAINING_SUITES]
        groups = [("jax-rows", training, True), ("jax", others, False)]
    commands = []
    for part, group, isolated in groups:
        if not group:
            continue
        command = [
            sys.executable, "-m", "bench.jax_suite", "--json", str(_part(out, part)),
            "--size", size.name, "--suites", *group, "--attention", attention,
            "--train-batches", *map(str, train_batches), "--window", str(size.timing.window),
        ]  # fmt: skip
        command += ["--only", only] if only else []
        if isolated:
            command += ["--isolate"]
            command += ["--autotune-logs", str(autotune_logs)] if autotune_logs else []
        commands.append(command)
    return commands


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    size = chosen_size(parser, args)
    try:
        suites = parse_suites(args.suite)
    except ValueError as e:
        parser.error(str(e))
    train_batches = list(size.train_batches)
    torch_batches = args.torch_train_batches or [max(train_batches)]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = []
    if "torch" in suites:
        parts.append(
            torch_command(size, _part(out, "torch"), train_batches=torch_batches, only=args.only)
        )
    parts += jax_commands(
        size, out, suites=[s for s in suites if s != "torch"], attention=args.attention,
        only=args.only, train_batches=train_batches, isolate=args.isolate,
        autotune_logs=args.autotune_logs,
    )  # fmt: skip
    written, failed, exits = [], [], []
    for command in parts:
        part = Path(command[command.index("--json") + 1])
        part.unlink(missing_ok=True)
        print("$ " + shlex.join(command), flush=True)
        code = subprocess.run(command, check=False).returncode
        if code != 0:
            exits.append(f"{command[2]} (exit {code})")
        if part.exists():
            written.append(part)
        else:
            failed.append({"name": command[2], "error": f"exit {code}, no rows"})
    rows, info = merge_runs(written)
    info["failed"] += failed
    counted = ("jax/train", "jax/infer", "jax/scale")
    if any(r.name.startswith(counted) and r.flops is None for r in rows):
        rows = _count_flops_on_cpu(rows, size, out, device=str(info.get("device", "")))
    info["size"] = args.size
    print(render(rows, skipped=info["skipped"], failed=info["failed"], size=args.size,
                 devices=info["devices"], unrecorded=info["unrecorded"],
                 attentions=info.get("attentions", ())))  # fmt: skip
    checks, unchecked = evaluate_targets(rows)
    lines = [c.line(judged=judged(args.size, info["devices"])) for c in checks]
    save_rows(
        rows, out, **info, checks=lines, unchecked=unchecked,
        command="python -m bench.run " + shlex.join(sys.argv[1:] if argv is None else argv),
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )  # fmt: skip
    print(f"wrote {args.out}", flush=True)
    # the rows measured are written, but the run is not complete
    if exits:
        print(f"error: {len(exits)} parts failed: {', '.join(exits)}", file=sys.stderr)
    rows_failed = [
        f"{f['name']}@{f['batch']}" if "batch" in f else f["name"]  # torch_peers' / jax_suite's
        for f in info["failed"]
        if f not in failed
    ]
    if rows_failed:
        print(f"error: {len(rows_failed)} rows failed: {', '.join(rows_failed)}", file=sys.stderr)
    return 1 if exits or info["failed"] else 0


def _count_flops_on_cpu(rows: list[Row], size: BenchSize, out: Path, *, device: str) -> list[Row]:
    """JAX rows without FLOPs (the GPU's cost model gives none) get ``bench.count_flops``'s
    CPU count of their steps (at the batches they ran), and their MFU from it; see that module."""
    counts_path = _part(out, "flops")
    training = [
        r.key for r in rows if r.flops is None and r.name.startswith(("jax/train", "jax/scale"))
    ]
    command = [sys.executable, "-m", "bench.count_flops", "--size", size.name, "--keys", *training]
    print("$ JAX_PLATFORMS=cpu " + shlex.join(command), flush=True)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    subprocess.run([*command, "--out", str(counts_path)], check=True, env=env)
    counted = json.loads(counts_path.read_text())
    return with_flops(rows, counted["flops"], source=counted["source"], peak=peak_flops(device))


def _part(out: Path, framework: str) -> Path:
    """Where one framework's process writes its rows: ``<out stem>.<framework>.json``."""
    return out.with_name(f"{out.stem}.{framework}.json")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="all", help=f"'all' or a comma list of {SUITES}")
    p.add_argument("--out", default="bench-results.json", help="JSON file to write")
    add_size_options(p)
    p.add_argument(
        "--torch-train-batches", type=positive_int, nargs="+", default=None,
        help="default: the largest JAX train batch (torch.compile per batch is slow)",
    )  # fmt: skip
    return p


if __name__ == "__main__":
    exit_on_error(main)
