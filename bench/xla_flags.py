"""The same JAX rows under several ``XLA_FLAGS`` settings, one process per setting, one table.

    python -m bench.xla_flags --only '^jax/train/lora-r8@256$' --out flags.json
    python -m bench.xla_flags --size tiny --only '^jax/train/lora-r8@4$' --variant plain= \\
        --variant no-triton-gemm=--xla_gpu_enable_triton_gemm=false

XLA reads its flags once, when the backend starts, so every variant runs ``bench.jax_suite`` in
a fresh process with ``XLA_FLAGS`` = the variant's flags (appended to any already set). Rows come
back renamed ``<name>[<variant>]`` and each variant's ratio to the first one is printed, so the
first variant should be the baseline (the default list starts with the default flags). A row that
failed in a variant's process, or a process that exited with an error, is listed under "failed"
(printed and in the JSON) and the exit status is 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.arguments import row_regex
from bench.results import Row, format_table, load_rows, save_rows
from bench.sizes import SIZES
from experiments.command_line import exit_on_error, positive_int

#: (name, flags): XLA GPU options that decide how the step's GEMMs and launches are done.
DEFAULT_VARIANTS: tuple[tuple[str, str], ...] = (
    ("default", ""),
    ("no-triton-gemm", "--xla_gpu_enable_triton_gemm=false"),
    ("no-command-buffer", "--xla_gpu_enable_command_buffer="),
    ("latency-hiding", "--xla_gpu_enable_latency_hiding_scheduler=true"),
    ("cublaslt", "--xla_gpu_enable_cublaslt=true"),
)


def parse_variant(text: str) -> tuple[str, str]:
    """ "name=flags" -> (name, flags); flags may be empty (the default settings). An argparse
    type: a bad variant is an ``argparse.ArgumentTypeError``."""
    name, sep, flags = text.partition("=")
    if not sep or not name or any(c in name for c in "[]@ "):
        raise argparse.ArgumentTypeError(f"a variant is NAME=FLAGS with a plain NAME, got {text!r}")
    return name, flags


def environ_with_xla_flags(flags: str) -> dict[str, str]:
    """This process's environment with ``flags`` appended to ``XLA_FLAGS`` (for a child)."""
    return {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()}


def run_variant(
    name: str, flags: str, *, out: Path, size: str, suites: Sequence[str], only: str,
    window: int | None,
) -> tuple[list[Row], list[dict[str, Any]]]:  # fmt: skip
    """The rows of one ``bench.jax_suite`` process under ``flags``, renamed ``<name>[<variant>]``
    (none if the process wrote no file), and its failures: the rows it lists as failed (renamed
    alike) and, if it exited with an error, the process itself (``[<variant>]``)."""
    part = out.with_name(f"{out.stem}.{name}.json")
    part.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "bench.jax_suite", "--json", str(part), "--size", size,
        "--suites", *suites, "--only", only,
    ]  # fmt: skip
    if window is not None:
        command += ["--window", str(window)]
    env = environ_with_xla_flags(flags)
    print(f"$ XLA_FLAGS={shlex.quote(env['XLA_FLAGS'])} {shlex.join(command)}", flush=True)
    code = subprocess.run(command, check=False, env=env).returncode
    rows, info = load_rows(part) if part.exists() else ([], {})
    failed = [{**f, "name": f"{f.get('name')}[{name}]"} for f in info.get("failed", [])]
    if code != 0:
        failed.append({"name": f"[{name}]", "error": f"its process exited {code}"})
    return [dataclasses.replace(r, name=f"{r.name}[{name}]") for r in rows], failed


def ratios(rows: Sequence[Row], baseline: str) -> list[str]:
    """'<key>: <items/s> = <x>x <baseline>' for every row with a baseline row of the same key."""
    suffix = f"[{baseline}]"
    base = {r.key.replace(suffix, ""): r for r in rows if suffix in r.name}
    lines = []
    for r in rows:
        plain = r.key.replace(r.name[r.name.index("[") :], "")
        if plain in base and suffix not in r.name:
            ratio = r.items_per_s / base[plain].items_per_s
            lines.append(f"{r.key}: {r.rate} = {ratio:.3f}x {baseline}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    from bench.jax_suite import JAX_SUITES  # it imports this module

    p = argparse.ArgumentParser(
        prog="python -m bench.xla_flags", description=__doc__.splitlines()[0]
    )
    p.add_argument("--only", type=row_regex, required=True, help="regex over row keys name@batch")
    p.add_argument("--size", choices=sorted(SIZES), default="full")
    p.add_argument("--suites", nargs="+", choices=JAX_SUITES, default=["train"])
    p.add_argument("--window", type=positive_int, default=None, help="calls per timed sample")
    p.add_argument(
        "--variant", type=parse_variant, action="append", default=None, metavar="NAME=FLAGS",
        help="repeatable; default: " + ", ".join(n for n, _ in DEFAULT_VARIANTS),
    )  # fmt: skip
    p.add_argument("--out", default="xla-flags.json")
    args = p.parse_args(argv)
    variants = args.variant or DEFAULT_VARIANTS
    names = [name for name, _ in variants]
    if len(set(names)) < len(names):
        p.error(f"--variant names repeat: {names}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    failed: list[dict[str, Any]] = []
    for name, flags in variants:
        got, lost = run_variant(
            name, flags, out=out, size=args.size, suites=args.suites, only=args.only,
            window=args.window,
        )  # fmt: skip
        rows, failed = rows + got, failed + lost
        save_rows(rows, out, variants=dict(variants), failed=failed)
    lines = ratios(rows, variants[0][0])
    lines_failed = [f"FAILED: {f['name']}: {f.get('error', '')}" for f in failed]
    print(format_table(rows), *lines, *lines_failed, sep="\n", flush=True)
    save_rows(rows, out, variants=dict(variants), ratios=lines, failed=failed)
    return 1 if failed else 0


if __name__ == "__main__":
    exit_on_error(main)
