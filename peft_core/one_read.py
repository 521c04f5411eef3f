"""Both rank-r products of one wide matrix from a single read of it (a Pallas kernel).

    products(a, f, w) = (a f, aᵀ w)     a (M, L), f (L, r), w (M, r)  ->  (M, r), (L, r) f32

An activation tap's backward (``peft_core.activation_grads``) forms g = dy Vᵀ and dV = hᵀ dy
from the layer's output gradient dy, and h = x U and dU = xᵀ g from its input x: as XLA dots
each reads its wide operand from memory, so x and dy are read twice, and those products are
bound by memory bandwidth (docs/benchmarks.md, calls 101-105). This kernel forms a pair from
one read of a: program p takes ``Tiles.rows · Tiles.blocks`` rows of a and walks their columns
``Tiles.cols`` at a time; each step's tile t (rows, cols) adds t f_cols to the rows' a f
(accumulated in registers over the walk) and writes t_colsᵀ w_rows, the program's part of
aᵀ w for those columns, which XLA then sums over programs. Rows beyond the last whole program
(fewer than ``rows · blocks``) and shapes the tiles do not fit are formed by XLA dots.

Backends: Triton on GPU, Pallas' interpreter on CPU (for tests: slow), none on TPU (a
ValueError). Numerics: operands in a's dtype, accumulation in float32 (a's dtype where wider),
as the XLA dots the activation tap uses.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plt

#: Triton's dot needs every dimension of at least this; narrower factors are zero-padded.
MIN_DOT = 16


class Tiles(NamedTuple):
    """The kernel's shape: a program reads ``blocks`` sub-blocks of ``rows`` rows of a (rows
    and cols powers of two, at least 16), ``cols`` columns at a time, with Triton's
    ``warps`` and pipeline ``stages``. More rows per program mean fewer partial sums of aᵀ w
    to write and add (programs · L · r floats) but fewer programs to fill the GPU."""

    rows: int = 128
    blocks: int = 4
    cols: int = 64
    warps: int = 8
    stages: int = 2


#: The tiles ``products`` uses when none are given (read when a call is traced: set it before
#: jitting, as ``bench.one_read`` does to compare them).
TILES = Tiles()


def _pow2(n: int) -> bool:
    return n >= MIN_DOT and n & (n - 1) == 0


def _kernel(
    tiles: Tiles,
    steps: int,
    a_ref: jax.Array,
    f_ref: jax.Array,
    w_ref: jax.Array,
    af_ref: jax.Array,
    part_ref: jax.Array,
) -> None:
    """Program p: a f for its rows (af_ref rows) and Σ_rows a[row, cols]ᵀ w[row] for every
    column step (part_ref[p])."""
    p = pl.program_id(0)
    f32 = part_ref.dtype
    starts = [(p * tiles.blocks + b) * tiles.rows for b in range(tiles.blocks)]
    ws = [w_ref[pl.ds(r0, tiles.rows), :] for r0 in starts]
    width = f_ref.shape[1]

    def step(j: jax.Array, accs: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        c0 = j * tiles.cols
        f = f_ref[pl.ds(c0, tiles.cols), :]
        part = jnp.zeros((tiles.cols, width), f32)
        out = []
        for acc, r0, w in zip(accs, starts, ws, strict=True):
            t = a_ref[pl.ds(r0, tiles.rows), pl.ds(c0, tiles.cols)]
            out.append(acc + jnp.dot(t, f, preferred_element_type=f32))
            part += jax.lax.dot_general(t, w, (((0,), (0,)), ((), ())), preferred_element_type=f32)
        part_ref[p, pl.ds(c0, tiles.cols), :] = part
        return tuple(out)

    zeros = tuple(jnp.zeros((tiles.rows, width), f32) for _ in starts)
    accs = jax.lax.fori_loop(0, steps, step, zeros)
    for acc, r0 in zip(accs, starts, strict=True):
        af_ref[pl.ds(r0, tiles.rows), :] = acc


def _accumulator(dtype: jnp.dtype) -> jnp.dtype:
    """float32, or ``dtype`` where wider."""
    return jnp.promote_types(dtype, jnp.float32)


def _xla(a: jax.Array, f: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
    f32 = _accumulator(a.dtype)
    return (
        jnp.dot(a, f, preferred_element_type=f32),
        jnp.einsum("ml,mr->lr", a, w, preferred_element_type=f32),
    )


def _compile_options(tiles: Tiles) -> tuple[bool, plt.CompilerParams | None]:
    """(interpret, Triton's compiler params) for the default backend."""
    backend = jax.default_backend()
    if backend == "cpu":
        return True, None
    if backend == "gpu":
        return False, plt.CompilerParams(num_warps=tiles.warps, num_stages=tiles.stages)
    raise ValueError(
        f"the one-read kernel (grads='pallas') runs on GPU (Triton) or CPU (interpreted), not "
        f"on {backend!r}: use grads='auto'"
    )


def fits(m: int, width: int, tiles: Tiles) -> bool:
    """Whether the kernel serves an (m, width) matrix: at least one program's rows, and
    ``tiles.cols`` dividing width (else ``products`` uses XLA's dots)."""
    return m >= tiles.rows * tiles.blocks and width % tiles.cols == 0


def products(
    a: jax.Array, f: jax.Array, w: jax.Array, tiles: Tiles | None = None
) -> tuple[jax.Array, jax.Array]:
    """(a f (M, r), aᵀ w (L, r)) in float32 (a's dtype where wider) for a (M, L), f (L, r),
    w (M, r), reading a once (module docstring) with ``tiles`` (default ``TILES``); XLA's dots
    where ``fits`` is false."""
    tiles = TILES if tiles is None else tiles
    (m, n), r = a.shape, f.shape[1]
    if f.shape != (n, r) or w.shape != (m, r):
        raise ValueError(
            f"products takes a (M, L), f (L, r), w (M, r); got {a.shape}, {f.shape}, {w.shape}"
        )
    if not (_pow2(tiles.rows) and _pow2(tiles.cols)) or tiles.blocks < 1:
        raise ValueError(
            f"tiles need rows and cols powers of two >= {MIN_DOT}, blocks >= 1: {tiles}"
        )
    if not fits(m, n, tiles):
        return _xla(a, f, w)
    (interpret, params), acc = _compile_options(tiles), _accumulator(a.dtype)
    width = max(MIN_DOT, 1 << (r - 1).bit_length())
    per_program = tiles.rows * tiles.blocks
    programs, done = m // per_program, m // per_program * per_program
    fp = jnp.pad(f.astype(a.dtype), ((0, 0), (0, width - r)))
    wp = jnp.pad(w[:done].astype(a.dtype), ((0, 0), (0, width - r)))
    af, parts = pl.pallas_call(
        functools.partial(_kernel, tiles, n // tiles.cols),
        grid=(programs,),
        out_shape=(
            jax.ShapeDtypeStruct((done, width), acc),
            jax.ShapeDtypeStruct((programs, n, width), acc),
        ),
        name="one_read_products",
        interpret=interpret,
        compiler_params=params,
    )(a, fp, wp)
    af, atw = af[:, :r], parts.sum(0)[:, :r]
    if done < m:
        rest_af, rest_atw = _xla(a[done:], f.astype(a.dtype), w[done:].astype(a.dtype))
        af, atw = jnp.concatenate([af, rest_af]), atw + rest_atw
    return af, atw
