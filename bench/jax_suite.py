"""The JAX rows, in their own process: ``python -m bench.jax_suite --json out.json [options]``.

Suites, run in the order given: "train" (ViT training steps of every method), "scan" (some of
them again on the ViT with its blocks in one ``nn.scan``), "scan-remat" (the same with each block
rematerialised, keeping the dense layers' outputs), "infer" (plain vs merged), "search"
(candidates/s and the whole evolutionary search), "conv" (ConvNeXt training steps), "e2e" (a
whole GLoRA VTAB-1k-shaped task through ``pipeline.run``, ``bench.end_to_end``), "scale" (LoRA
and the GLoRA supernet data-parallel over 1, 2, 4, ... devices at the largest train batch per
device, ``bench.scaling``). Rows are
written to the JSON after each one, so a run stopped early keeps what it measured; a row that
raises is listed under "failed" and the run goes on.
"""

from __future__ import annotations

import argparse
import functools
import re
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax

from bench import autotune_log, jax_train, scaling
from bench.end_to_end import E2E_ROW, bench_end_to_end
from bench.jax_search import bench_search
from bench.jax_serve import INFER_VARIANTS, bench_inference
from bench.models import choose_attention, convnext_backbone, vit_backbone
from bench.options import add_size_options, chosen_size
from bench.peaks import peak_flops
from bench.results import (
    Row,
    attention_entries,
    attentions_of,
    key_filter,
    load_rows,
    save_rows,
)
from bench.sizes import BenchSize
from bench.xla_flags import environ_with_xla_flags
from experiments.command_line import exit_on_error
from experiments.training import data_mesh

JAX_SUITES = ("train", *jax_train.SCANNED_SUITES, "infer", "search", "conv", "e2e", "scale")


class Recorder:
    """Collects rows and failures, printing and saving after each measurement."""

    def __init__(self, out: Path, only: str | None, extra: dict[str, Any]) -> None:
        self.out, self.extra = out, extra
        self.wanted = key_filter(only)
        self.rows: list[Row] = []
        self.failed: list[dict[str, Any]] = []

    def measure(
        self, key: str, fn: Callable[[], list[Row]], planned: Sequence[str] | None = None
    ) -> list[Row]:
        """Run ``fn`` (one or more rows) when ``--only`` selects ``key`` or one of the
        ``planned`` row keys (or names, where a row's batch is known only once measured), and
        keep the rows it selects; failures are recorded."""
        if not any(map(self.wanted, [key] if planned is None else planned)):
            return []
        started = time.perf_counter()
        try:
            rows = [r for r in fn() if self.wanted(r.key) or self.wanted(r.name)]
        except Exception as e:  # noqa: BLE001 - report the row as failed, keep measuring
            traceback.print_exc()
            self.failed.append({"name": key, "error": f"{type(e).__name__}: {e}"[:2000]})
            rows = []
        for r in rows:
            print(f"{r.key}: {r.rate} ({r.step_s * 1e3:.2f} ms)", flush=True)
        print(f"  [{key} took {time.perf_counter() - started:.1f}s]", flush=True)
        self.rows.extend(rows)
        save_rows(self.rows, self.out, failed=self.failed, **self.extra)
        return rows


def run_suites(
    size: BenchSize, suites: Sequence[str], *, attention: str, recorder: Recorder
) -> None:
    """Measure the requested suites in the order given (search uses infer's FLOPs if run)."""
    peak = peak_flops(jax.devices()[0].device_kind)
    vit, impl = None, None
    if {"train", *jax_train.SCANNED_SUITES, "infer", "search", "e2e", "scale"} & set(suites):
        impl, note = choose_attention(attention)
        recorder.extra["attention"] = note
        print(note, flush=True)
    vit_bench = None
    if {"train", "infer", "search", "scale"} & set(suites):  # scan builds its own, scanned
        vit = vit_backbone(size, attention=impl)
        vit_bench = jax_train.training_bench(vit, size, "train", peak)
    flops_per_image = None
    for suite in suites:
        if suite == "train" and vit_bench is not None:
            _train_rows(recorder, vit_bench, size, suite)
        elif suite in (*jax_train.SCANNED_SUITES, "conv"):
            if suite == "conv":
                backbone = convnext_backbone(size)
            else:
                _, policy = jax_train.SCANNED_SUITES[suite]
                backbone = vit_backbone(size, attention=impl, scan=True, remat_policy=policy)
            _train_rows(
                recorder, jax_train.training_bench(backbone, size, suite, peak), size, suite
            )
        elif suite == "infer" and vit is not None:
            rows = recorder.measure(
                "jax/infer",
                functools.partial(
                    bench_inference, vit, prefix="jax/infer", batches=size.infer_batches,
                    image_size=size.image_size, num_classes=size.num_classes,
                    timing=size.timing, peak_flops=peak,
                ),
                [f"jax/infer/{v}@{b}" for v in INFER_VARIANTS for b in size.infer_batches],
            )  # fmt: skip
            widest = max(rows, key=lambda r: r.batch, default=None)
            if widest is not None and widest.flops is not None:
                flops_per_image = widest.flops / widest.batch
        elif suite == "scale" and vit_bench is not None:
            _scale_rows(recorder, vit_bench, max(size.train_batches))
        elif suite == "e2e":
            with tempfile.TemporaryDirectory(prefix="bench-e2e-") as workdir:  # removed after
                recorder.measure(
                    E2E_ROW, functools.partial(_e2e_rows, size, Path(workdir), impl),
                    [f"{E2E_ROW}@1"],
                )  # fmt: skip
        elif suite == "search" and vit is not None:
            recorder.measure(
                "jax/search",
                functools.partial(
                    bench_search, vit, size, forward_flops_per_image=flops_per_image,
                    peak_flops=peak,
                ),
                [f"jax/search/score-val{size.val_size}@{size.search.population}",
                 "jax/search/evolution"],
            )  # fmt: skip


def _e2e_rows(size: BenchSize, workdir: Path, attention: str | None) -> list[Row]:
    return [bench_end_to_end(size, workdir, attention=attention)]


def _train_rows(
    recorder: Recorder, bench: jax_train.TrainBench, size: BenchSize, suite: str
) -> None:
    _, cases, batches = jax_train.training_suite(size, suite)
    for batch in batches:
        for case in cases:
            recorder.measure(f"{bench.prefix}/{case.label}@{batch}", _train(bench, case, batch))


def _scale_rows(recorder: Recorder, bench: jax_train.TrainBench, per_device: int) -> None:
    """``bench.scaling``'s rows, 1 device first: the others take its FLOPs (x n)."""
    devices = jax.devices()
    for case in jax_train.SCALE_CASES:
        one_device_flops = None
        for n in scaling.device_counts(len(devices), jax.process_count()):
            rows = recorder.measure(
                f"{scaling.row_name(case.label, n)}@{per_device * n}",
                functools.partial(
                    _scale_row, bench, case, devices[:n], per_device, one_device_flops
                ),
            )
            if n == 1 and rows:
                one_device_flops = rows[0].flops


def _scale_row(
    bench: jax_train.TrainBench, case: jax_train.TrainCase, devices: Sequence[jax.Device],
    per_device: int, one_device_flops: float | None,
) -> list[Row]:  # fmt: skip
    """One scaling row over ``devices``; FLOPs n x ``one_device_flops`` (a one-device row: its
    own count)."""
    n = len(devices)
    row = jax_train.bench_train_step(
        bench, case, batch=per_device * n, mesh=data_mesh(devices),
        name=scaling.row_name(case.label, n),
        note=f"data parallel over {n} devices, batch {per_device} per device; {case.note}",
    )  # fmt: skip
    flops = row.flops if n == 1 else one_device_flops
    return [scaling.with_step_flops(row, flops, bench.peak_flops)]


def _train(
    bench: jax_train.TrainBench, case: jax_train.TrainCase, batch: int
) -> Callable[[], list[Row]]:
    return lambda: [jax_train.bench_train_step(bench, case, batch=batch)]


def run_isolated(
    out: Path,
    size: BenchSize,
    suites: Sequence[str],
    only: str | None,
    passthrough: list[str],
    autotune_logs: Path | None = None,
) -> None:
    """``--isolate``: every selected training row in a fresh ``bench.jax_suite`` process.

    Rows of one process share XLA's in-process autotuning results, so every row would run with
    the choices made while compiling the first, good or bad; and a process's autotuning can go
    wrong (docs/benchmarks.md, calls 85-87: a host stall in the one timed run of ConvNeXt-T's
    best depthwise conv algorithm made 2 of 13 processes 15 ms slower). This parent never starts
    a JAX backend (it would hold the GPU's memory); it collects the children's rows, failures
    and attention settings (each child checks its own: ``attention_entries``) into ``out`` after
    each one; a child that dies without a row is a failure of its row.

    ``autotune_logs``: each child dumps XLA's autotuning logs and picks there
    (``<row key>.logs.txt`` / ``.picks.txt``), and ``bench.autotune_log``'s report on all of
    them (stalled measurements, instructions picked slower in one row's process than in
    another's) is printed and written to ``report.txt`` there."""
    wanted = key_filter(only)
    rows: list[Row] = []
    failed: list[dict[str, Any]] = []
    extra: dict[str, Any] = {"isolated": "each row in a process of its own"}
    attentions: list[str] = []  # each process checks the attention it asks for itself
    dumps: list[tuple[Path, Path | None]] = []
    part = out.with_name(f"{out.stem}.row.json")
    for suite in suites:
        for key in filter(wanted, jax_train.training_keys(size, suite)):
            part.unlink(missing_ok=True)
            command = [
                sys.executable, "-m", "bench.jax_suite", "--json", str(part), "--suites", suite,
                "--only", f"^{re.escape(key)}$", *passthrough,
            ]  # fmt: skip
            env, dump = None, None
            if autotune_logs is not None:
                env, dump = _dumping_autotuning(autotune_logs, key)
            print(f"$ {shlex.join(command)}", flush=True)
            code = subprocess.run(command, check=False, env=env).returncode
            if dump is not None and dump[0].exists():
                dumps.append((dump[0], dump[1] if dump[1].exists() else None))
            got, info = load_rows(part) if part.exists() else ([], {})
            failed += info.pop("failed", [])
            if not got and not any(f["name"] == key for f in failed):
                failed.append({"name": key, "error": f"its process exited {code} with no row"})
            rows += got
            attentions += attentions_of(info)
            extra.update(info)
            extra.update(attention_entries(attentions))
            save_rows(rows, out, failed=failed, **extra)
    part.unlink(missing_ok=True)
    if autotune_logs is not None:
        text = autotune_log.report(dumps) if dumps else "no autotuning dumps (no GPU autotuning)"
        print(text, flush=True)
        (autotune_logs / "report.txt").write_text(text + "\n")


def _dumping_autotuning(folder: Path, key: str) -> tuple[dict[str, str], tuple[Path, Path]]:
    """A child's environment that dumps XLA's autotuning logs and picks into ``folder``, and
    the two files (named after the row ``key``)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^\w.@-]+", "_", key)
    logs, picks = folder / f"{stem}.logs.txt", folder / f"{stem}.picks.txt"
    flags = f"--xla_gpu_dump_autotune_logs_to={logs} --xla_gpu_dump_autotune_results_to={picks}"
    return environ_with_xla_flags(flags), (logs, picks)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.jax_suite", description=__doc__.splitlines()[0]
    )
    p.add_argument("--json", required=True)
    p.add_argument("--suites", nargs="+", choices=JAX_SUITES, default=list(JAX_SUITES))
    add_size_options(p)
    args = p.parse_args(argv)
    size = chosen_size(p, args)
    if args.isolate:
        others = [s for s in args.suites if s not in jax_train.TRAINING_SUITES]
        if others:
            p.error(f"--isolate runs the training suites {jax_train.TRAINING_SUITES}, not {others}")
        passthrough = ["--size", args.size, "--attention", args.attention]
        if args.train_batches:
            passthrough += ["--train-batches", *map(str, args.train_batches)]
        if args.window is not None:
            passthrough += ["--window", str(args.window)]
        run_isolated(Path(args.json), size, args.suites, args.only, passthrough, args.autotune_logs)
        return 0
    device = jax.devices()[0]
    extra: dict[str, Any] = {
        "device": f"{device.platform}: {device.device_kind} x{jax.device_count()}",
        "versions": {"jax": jax.__version__, "python": sys.version.split()[0]},
        "timing": size.timing.describe(),
        "size": size.name,
    }
    recorder = Recorder(Path(args.json), args.only, extra)
    run_suites(size, args.suites, attention=args.attention, recorder=recorder)
    return 0


if __name__ == "__main__":
    exit_on_error(main)
