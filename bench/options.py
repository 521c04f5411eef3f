"""Command-line options that ``bench.run`` and ``bench.jax_suite`` share, and the size they pick."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from bench.arguments import ATTENTIONS, row_regex
from bench.sizes import SIZES, BenchSize
from experiments.command_line import positive_int


def add_size_options(p: argparse.ArgumentParser) -> None:
    """--size, --attention, --only, --train-batches, --window, --isolate, --autotune-logs."""
    p.add_argument("--size", choices=sorted(SIZES), default="full")
    p.add_argument(
        "--attention", default="auto", choices=ATTENTIONS,
        help="ViT attention (checked here, not in each suite's process)",
    )  # fmt: skip
    p.add_argument("--only", type=row_regex, default=None, help="regex over row keys name@batch")
    p.add_argument("--train-batches", type=positive_int, nargs="+", default=None)
    p.add_argument(
        "--window", type=positive_int, default=None,
        help="calls per timed sample, launched back to back (default: the size's; 1 = each "
        "call timed alone)",
    )  # fmt: skip
    p.add_argument(
        "--isolate", action="store_true",
        help="each JAX training row (suites train, scan, scan-remat, conv) in a fresh process",
    )  # fmt: skip
    p.add_argument(
        "--autotune-logs", type=Path, default=None,
        help="with --isolate: a folder for each training row's XLA autotuning dumps and report",
    )  # fmt: skip


def chosen_size(p: argparse.ArgumentParser, args: argparse.Namespace) -> BenchSize:
    """``--size`` with ``--window`` and ``--train-batches`` applied; exits on options that
    cannot go together."""
    if args.autotune_logs is not None and not args.isolate:
        p.error("--autotune-logs needs --isolate (XLA reads its dump flags when a process starts)")
    size = SIZES[args.size].with_window(args.window)
    if args.train_batches:
        size = dataclasses.replace(size, train_batches=tuple(args.train_batches))
    return size
