"""The activation tap's backward on one layer: XLA's four rank-8 dots against the one-read kernel.

    python -m bench.tap_backward [--tokens 50688] [--shapes 768x768 768x3072 3072x768]
        [--tiles 128,4,64,8,3 ...] [--json out.json]

Per layer shape (fan_in, fan_out) of ViT-B/16 (q, k, v and out 768x768, fc1 768x3072, fc2
3072x768) and M tokens (256 images of 198 tokens, the model's padding: 50688), bf16 x
(M, fan_in) and dy (M, fan_out), f32 factors U (fan_in, 8), V (8, fan_out); dU and dV from

    xla            ``activation_grads.factor_grads``: h = x U, g = dy Vᵀ, dU = xᵀ g,
                   dV = hᵀ dy, four XLA dots, so x and dy are each read twice
    one-read T     ``activation_grads.one_read_factor_grads`` with the kernel's tiles T
                   (rows,blocks,cols,warps,stages): the wider of x and dy read once

timed in turn (``bench.timing.time_interleaved``: windows of 5 calls on 3 rotating input
sets, medians), with the bandwidth each would need to read x and dy once in that time
(``min_GB/s``; the H200's HBM: 4.8 TB/s), and a row that only reads x and dy once (their
column sums: the floor for any form). Each one-read row's dU, dV are checked against
xla's (relative error, printed) before timing; tiles that fail to compile give a row with the
error instead of a time.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from bench import low_rank_layer
from bench.arguments import layer_shape
from bench.low_rank_layer import relative_errors, rotating
from bench.timing import TimingSettings, time_interleaved
from experiments.command_line import exit_on_error, positive_int
from peft_core import activation_grads
from peft_core.one_read import Tiles

SHAPES = ((768, 768), (768, 3072), (3072, 768))
#: One-read tile shapes timed by default: the default (``one_read.TILES``), the one before it,
#: the other 64-column tiles (both dots on wgmma; 32-column tiles compile aᵀ w to mma.sync) and
#: the rest of call 108's sweep on an H200 (the 64-column shapes fastest on fc1 and fc2); on an
#: H100 (call 106) four others were slower on every shape. (32-row blocks are left out: Triton
#: 3.5.1 and 3.9.0 compile them for sm_90 without cp.async, so nothing is pipelined:
#: bench/runs/2026-12-02-h200/cpu-triton/report.txt.)
TILES = (
    "64,2,64,4,3",
    "64,4,32,4,3",
    "64,4,64,4,3",
    "128,2,64,8,2",
    "128,2,32,8,3",
    "64,4,32,4,4",
)
Backward = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def parse_tiles(text: str) -> Tiles:
    """Tiles from their text "rows,blocks,cols,warps,stages"."""
    parts = text.split(",")
    if len(parts) != len(Tiles._fields) or not all(p.isdigit() for p in parts):
        raise ValueError(f"tiles are {','.join(Tiles._fields)} as integers, got {text!r}")
    return Tiles(*map(int, parts))


def backward(tiles: Tiles | None) -> Backward:
    """jit((x, U, V, dy) -> (dU, dV)) on the first device: the XLA tap's (None) or the one-read
    tap's with ``tiles``, traced under a mesh of that device (the kernel runs on a mesh's
    devices' rows: on a host of several GPUs it needs one)."""
    grads = (
        activation_grads.factor_grads if tiles is None
        else functools.partial(activation_grads.one_read_factor_grads, tiles=tiles)
    )  # fmt: skip
    jitted = jax.jit(lambda x, u, v, dy: grads(x, u, v, None, dy))
    mesh = Mesh(np.asarray(jax.devices()[:1]), ("data",))

    def run(x: jax.Array, u: jax.Array, v: jax.Array, dy: jax.Array) -> tuple[jax.Array, jax.Array]:
        with jax.set_mesh(mesh):
            return jitted(x, u, v, dy)  # type: ignore[no-any-return]

    return run


#: The row that only reads x and dy once (XLA's column sums of each): the floor for any form.
BOUND = "bound: read x, dy once"


@jax.jit
def read_once(x: jax.Array, u: jax.Array, v: jax.Array, dy: jax.Array) -> tuple[jax.Array, ...]:
    """Column sums of x and dy in f32: one read of each, nothing else."""
    return jnp.sum(x, axis=0, dtype=jnp.float32), jnp.sum(dy, axis=0, dtype=jnp.float32)


def inputs(tokens: int, fan_in: int, fan_out: int, seed: int) -> tuple[jax.Array, ...]:
    """(x bf16, U, V, dy bf16): ``low_rank_layer.inputs``' x, A, B and its c as dy."""
    x, a, b, _, c = low_rank_layer.inputs(tokens, fan_in, fan_out, seed)
    return x, a, b, c.astype(jnp.bfloat16)


def run(
    tokens: Sequence[int], shapes: Sequence[tuple[int, int]], tiles: Sequence[Tiles],
    settings: TimingSettings,
) -> list[dict[str, Any]]:  # fmt: skip
    """A row per (tokens, shape, form): ms per backward, the bandwidth reading x and dy once
    in that time would take, and the gradients' errors against the XLA form."""
    rows: list[dict[str, Any]] = []
    for m in tokens:
        for fan_in, fan_out in shapes:
            sets = [inputs(m, fan_in, fan_out, seed) for seed in range(settings.input_sets)]
            forms = {"xla": backward(None)} | {f"one-read {','.join(map(str, t))}": backward(t)
                                               for t in tiles}  # fmt: skip
            reference = forms["xla"](*sets[0])
            errors: dict[str, list[float]] = {}
            for name, fn in list(forms.items()):
                try:  # a tile shape Triton cannot compile (shared memory, registers) is a row
                    errors[name] = relative_errors(fn(*sets[0]), reference)
                except Exception as e:  # noqa: BLE001 (recorded, the other forms go on)
                    del forms[name]
                    rows.append(dict(tokens=m, fan_in=fan_in, fan_out=fan_out, form=name,
                                     error=f"{type(e).__name__}: {e}"[:2000]))  # fmt: skip
                    print(f"M={m} {fan_in}x{fan_out} {name:24s} failed: {rows[-1]['error'][:300]}")
            calls = {name: rotating(fn, sets) for name, fn in forms.items()}
            calls[BOUND] = rotating(read_once, sets)
            errors[BOUND] = []
            timings = time_interleaved(calls, sync=jax.block_until_ready, settings=settings)
            once = m * (fan_in + fan_out) * 2  # bytes of bf16 x and dy
            for name, t in timings.items():
                row = dict(tokens=m, fan_in=fan_in, fan_out=fan_out, form=name,
                           ms=t.median_s * 1e3, p10_ms=t.p10_s * 1e3, p90_ms=t.p90_s * 1e3,
                           min_gb_per_s=once / t.median_s / 1e9,
                           grad_rel_errors=errors[name])  # fmt: skip
                rows.append(row)
                print(f"M={m} {fan_in}x{fan_out} {name:24s} {row['ms']:8.3f} ms  "
                      f"min_GB/s {row['min_gb_per_s']:7.0f}  rel. err. dU/dV vs xla: "
                      f"{errors[name]}", flush=True)  # fmt: skip
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.tap_backward", description=(__doc__ or "").splitlines()[0]
    )
    p.add_argument("--tokens", type=positive_int, nargs="+", default=[50688])
    p.add_argument(
        "--shapes", type=layer_shape, nargs="+", default=list(SHAPES), metavar="FAN_INxFAN_OUT"
    )
    p.add_argument("--tiles", nargs="+", default=list(TILES))
    p.add_argument("--repeats", type=positive_int, default=30)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    settings = TimingSettings(warmup=3, repeats=args.repeats, input_sets=3, window=5)
    try:
        tiles = [parse_tiles(t) for t in args.tiles]
    except ValueError as e:
        p.error(str(e))
    rows = run(args.tokens, args.shapes, tiles, settings)
    if args.json is not None:
        args.json.write_text(json.dumps({"device": str(jax.devices()[0]), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    exit_on_error(main)
