"""Both rank-r products of one wide matrix from a single read of it (a Pallas kernel).

    products(a, f, w) = (a f, aᵀ w)     a (M, L), f (L, r), w (M, r)  ->  (M, r), (L, r) f32

An activation tap's backward (``peft_core.activation_grads``) forms g = dy Vᵀ and dV = hᵀ dy
from the layer's output gradient dy, and h = x U and dU = xᵀ g from its input x: as XLA dots
each reads its wide operand from memory, so x and dy are read twice, and those products are
bound by memory bandwidth (docs/benchmarks.md, calls 101-105). This kernel forms a pair from
one read of a: program p takes ``Tiles.rows · Tiles.blocks`` rows of a and walks their columns
``Tiles.cols`` at a time; each step's tile t (rows, cols) adds t f_cols to the rows' a f
(accumulated in registers over the walk) and writes t_colsᵀ w_rows, the program's part of
aᵀ w for those columns, which XLA then sums over programs. Triton's dots are at least 16
wide, so r is padded to a power of two rp and, where rp < 16, each step packs 16 / rp column
tiles' parts side by side in one (cols, 16) block (w placed at lane offset q·rp for tile q):
the partial sums cost programs · L · rp floats, not programs · L · 16. Rows beyond the last
whole program (fewer than ``rows · blocks``) and shapes the tiles do not fit are formed by XLA
dots.

Backends: Triton on GPU, Pallas' interpreter on CPU (for tests: slow), none on TPU (a
ValueError). Numerics: operands in a's dtype, accumulation in float32 (a's dtype where wider),
as the XLA dots the activation tap uses; Triton multiplies float32 operands as TF32.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.sharding import PartitionSpec as P

#: Pallas' Triton backend, which the kernel compiles with on GPUs: deprecated in jax 0.11 (a
#: DeprecationWarning when a kernel is lowered), to be removed in a later JAX.
TRITON_MODULE = "jax.experimental.pallas.triton"

#: Triton's dot needs every dimension of at least this; narrower factors are zero-padded.
MIN_DOT = 16


class Tiles(NamedTuple):
    """The kernel's shape: a program reads ``blocks`` sub-blocks of ``rows`` rows of a (rows
    and cols powers of two, at least 16), ``cols`` columns at a time, with Triton's
    ``warps`` and pipeline ``stages``. More rows per program mean fewer partial sums of aᵀ w
    to write and add (programs · L · rp floats) but fewer programs to fill the GPU: the
    default's 2 x 64 rows make 396 programs of ViT-B/16's 50688 rows at batch 256, one
    resident per SM in bf16 (each 120 KiB of shared memory, ``shared_memory_bytes``, and 72
    registers a thread compiled for sm_90 by Triton 3.5.1: bench/runs/2026-12-02-h200/cpu-triton/);
    64 columns put both dots on Hopper's wgmma (with fewer, aᵀ w compiles to mma.sync), and
    stages 3 keep one step's loads in flight while the last one is used (with columns under 64
    Triton buffers stages - 1 steps). Of the six shapes timed on an H200 (call 108,
    docs/benchmarks.md) it was the fastest on fc1 and fc2, and its training step beat the XLA
    tap's (call 109), which the default before it, 64,4,32,4,3, did not (calls 107-108). On an
    H100 (call 112) 64,4,64,4,3 ran fc1 and fc2 0.011-0.013 ms faster alone and the LoRA and
    FLoRA steps within 0.25 ms of these tiles (call 115), which stay the default."""

    rows: int = 64
    blocks: int = 2
    cols: int = 64
    warps: int = 4
    stages: int = 3


#: Shared memory one CUDA block may use on H100 and H200 (227 KiB).
SHARED_MEMORY = 232_448


#: The tiles ``products`` uses when none are given (read when a call is traced).
TILES = Tiles()


class _Lanes(NamedTuple):
    """How r columns sit in the kernel's dots: r padded to ``rp`` (a power of two), ``lanes``
    = max(16, rp) wide, ``pack`` column tiles' parts side by side per block (at most
    lanes / rp; 0: the kernel cannot serve the width)."""

    rp: int
    lanes: int
    pack: int


def _lanes(r: int, width: int | None = None, cols: int = 1) -> _Lanes:
    """The layout for rank r; with ``width``, ``pack`` is the largest power of two up to
    lanes / rp whose ``pack · cols`` columns divide width."""
    rp = 1 << (r - 1).bit_length()
    lanes = max(MIN_DOT, rp)
    pack = lanes // rp
    while width is not None and pack and width % (cols * pack):
        pack //= 2
    return _Lanes(rp, lanes, pack)


def shared_memory_bytes(tiles: Tiles, r: int, itemsize: int = 2, width: int | None = None) -> int:
    """About the shared memory Triton gives the kernel at rank r for a of ``itemsize`` bytes
    (``width`` columns: their packing, ``_lanes``; None: the most packed, an upper bound):
    per step's blocks · pack tiles (rows, cols), stages - 1 buffers (stages where cols >= 64,
    which Hopper pipelines one deeper), plus f's tiles, the w blocks and the partial sums. It
    equals what Triton 3.9.0 allocated compiling this kernel for sm_90 at rank 8 for every
    tile shape ``bench.tap_backward`` sweeps (3.5.1: up to 1 KiB less; compiled on the CPU
    machine, bench/runs/2026-12-02-h200/cpu-triton/); with stages 1 nothing is pipelined and
    it is an upper bound, as it is for 32-row blocks, which Triton does not pipeline
    (24,576 B at 32 x 8 rows, 32 cols, 3 stages)."""
    _, lanes, pack = _lanes(r, width, tiles.cols)
    buffers = tiles.stages if tiles.cols >= 64 else tiles.stages - 1
    a_tiles = tiles.blocks * pack * tiles.rows * tiles.cols * itemsize * max(buffers, 1)
    f_tiles = pack * tiles.stages * tiles.cols * lanes * itemsize
    w_blocks = tiles.blocks * pack * tiles.rows * lanes * itemsize
    return a_tiles + f_tiles + w_blocks + tiles.cols * lanes * 4


def _tile_size(n: int) -> bool:
    """Whether ``n`` can be a tile's rows or columns: a power of two of at least 16."""
    return n >= MIN_DOT and n & (n - 1) == 0


def _kernel(
    tiles: Tiles,
    steps: int,
    pack: int,
    a_ref: jax.Array,
    f_ref: jax.Array,
    w_ref: jax.Array,
    af_ref: jax.Array,
    part_ref: jax.Array,
) -> None:
    """Program p: a f for its rows (af_ref rows) and, per step j, Σ_rows a[row, tile]ᵀ w[row]
    for its ``pack`` column tiles, tile q in lanes [q·rp, (q + 1)·rp) (part_ref[p], rows
    j·cols ...)."""
    p = pl.program_id(0)
    acc_dtype, lanes = part_ref.dtype, f_ref.shape[1]
    starts = [(p * tiles.blocks + b) * tiles.rows for b in range(tiles.blocks)]
    ws = [[w_ref[q, pl.ds(r0, tiles.rows), :] for q in range(pack)] for r0 in starts]

    def step(j: jax.Array, accs: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        part = jnp.zeros((tiles.cols, lanes), acc_dtype)
        out = list(accs)
        for q in range(pack):
            c0 = (j * pack + q) * tiles.cols
            f = f_ref[pl.ds(c0, tiles.cols), :]
            for b, r0 in enumerate(starts):
                t = a_ref[pl.ds(r0, tiles.rows), pl.ds(c0, tiles.cols)]
                out[b] += jnp.dot(t, f, preferred_element_type=acc_dtype)
                part += jax.lax.dot_general(
                    t, ws[b][q], (((0,), (0,)), ((), ())), preferred_element_type=acc_dtype
                )
        part_ref[p, pl.ds(j * tiles.cols, tiles.cols), :] = part
        return tuple(out)

    zeros = tuple(jnp.zeros((tiles.rows, lanes), acc_dtype) for _ in starts)
    accs = jax.lax.fori_loop(0, steps, step, zeros)
    for acc, r0 in zip(accs, starts, strict=True):
        af_ref[pl.ds(r0, tiles.rows), :] = acc


def _accumulator(dtype: jnp.dtype) -> jnp.dtype:
    """float32, or ``dtype`` where wider."""
    return jnp.promote_types(dtype, jnp.float32)


def _xla(a: jax.Array, f: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
    acc_dtype = _accumulator(a.dtype)
    return (
        jnp.dot(a, f, preferred_element_type=acc_dtype),
        jnp.einsum("ml,mr->lr", a, w, preferred_element_type=acc_dtype),
    )


@functools.cache
def triton_available() -> bool:
    """Whether this JAX has Pallas' Triton backend (``TRITON_MODULE``): the kernel's GPU form
    needs it, and "auto" reads once only where it is there (``activation_grads.reads_once``)."""
    return importlib.util.find_spec(TRITON_MODULE) is not None


def _interpreted() -> bool:
    """Whether the kernel runs in Pallas' interpreter (CPU) rather than Triton (GPU); a
    ValueError on any other backend, and on a GPU when this JAX has no Triton backend."""
    backend = jax.default_backend()
    if backend not in ("cpu", "gpu"):
        raise ValueError(
            f"the one-read kernel (grads='pallas') runs on GPU (Triton) or CPU (interpreted), "
            f"not on {backend!r}: use grads='auto'"
        )
    if backend == "gpu" and not triton_available():
        raise ValueError(
            f"the one-read kernel (grads='pallas') compiles with Pallas' Triton backend, which "
            f"this JAX ({jax.__version__}) no longer has ({TRITON_MODULE}): use grads='auto'"
        )
    return backend == "cpu"


def fits(m: int, width: int, r: int, tiles: Tiles) -> bool:
    """Whether the kernel serves an (m, width) matrix with rank r: at least one program's rows,
    and ``tiles.cols`` times a packing of column tiles dividing width (else ``products`` uses
    XLA's dots)."""
    return m >= tiles.rows * tiles.blocks and _lanes(r, width, tiles.cols).pack > 0


def partitioned() -> bool:
    """Whether the kernel can run on this trace's rows: one device, or several under a mesh in
    context (``jax.sharding.get_abstract_mesh``), which splits them (``products``)."""
    return jax.device_count() == 1 or not jax.sharding.get_abstract_mesh().empty


def products(
    a: jax.Array, f: jax.Array, w: jax.Array, tiles: Tiles | None = None
) -> tuple[jax.Array, jax.Array]:
    """(a f (M, r), aᵀ w (L, r)) in float32 (a's dtype where wider) for a (M, L), f (L, r),
    w (M, r), reading a once (module docstring) with ``tiles`` (default ``TILES``); XLA's dots
    where ``fits`` is false, and where the default tiles need more shared memory than a CUDA
    block has (float64; tiles given are then a ValueError).

    Under a mesh of several devices (the context's, ``jax.sharding.get_abstract_mesh``: the
    trainer's step sets it) a's and w's rows are split over every mesh axis, the kernel runs on
    each device's rows and aᵀ w is summed over the devices; a product whose rows do not split
    evenly goes to XLA's dots. Traced with several devices and no mesh, where the kernel would
    run, it is a ValueError: XLA cannot partition the kernel, it would gather a on every
    device."""
    given, tiles = tiles is not None, TILES if tiles is None else tiles
    (m, n), r = a.shape, f.shape[1]
    if f.shape != (n, r) or w.shape != (m, r):
        raise ValueError(
            f"products takes a (M, L), f (L, r), w (M, r); got {a.shape}, {f.shape}, {w.shape}"
        )
    if not (_tile_size(tiles.rows) and _tile_size(tiles.cols)) or tiles.blocks < 1:
        raise ValueError(
            f"tiles need rows and cols powers of two >= {MIN_DOT}, blocks >= 1: {tiles}"
        )
    _interpreted()  # refuses a TPU whatever the shapes
    mesh = jax.sharding.get_abstract_mesh()
    devices = 1 if mesh.empty else mesh.size
    if m % devices or not fits(m // devices, n, r, tiles):
        return _xla(a, f, w)
    if not partitioned():
        raise ValueError(
            f"the one-read kernel (grads='pallas') on {jax.device_count()} devices needs the "
            "mesh that splits its rows: trace the step under jax.set_mesh(mesh), its inputs "
            "placed on that mesh (experiments' trainer does)"
        )
    if devices == 1:
        return _local_products(a, f, w, tiles, given)
    rows = P(mesh.axis_names)

    def per_device(a: jax.Array, f: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
        af, atw = _local_products(a, f, w, tiles, given)
        return af, jax.lax.psum(atw, mesh.axis_names)

    return jax.shard_map(  # type: ignore[no-any-return]
        per_device, mesh=mesh, in_specs=(rows, P(), rows), out_specs=(rows, P()),
        check_vma=False,
    )(a, f, w)  # fmt: skip


def _local_products(
    a: jax.Array, f: jax.Array, w: jax.Array, tiles: Tiles, given: bool
) -> tuple[jax.Array, jax.Array]:
    """``products`` on one device's rows (which ``fits``); tiles over a CUDA block's shared
    memory are a ValueError if ``given``, else XLA's dots."""
    (m, n), r = a.shape, f.shape[1]
    interpret, acc_dtype = _interpreted(), _accumulator(a.dtype)
    need = shared_memory_bytes(tiles, r, a.dtype.itemsize, n)
    if not interpret and need > SHARED_MEMORY:
        if not given:
            return _xla(a, f, w)
        raise ValueError(
            f"{tiles} need about {need:,} bytes of shared memory at rank {r}, over the "
            f"{SHARED_MEMORY:,} a CUDA block has on H100/H200: use fewer rows, blocks or stages"
        )
    params = None
    if not interpret:
        triton = importlib.import_module(TRITON_MODULE)
        params = triton.CompilerParams(num_warps=tiles.warps, num_stages=tiles.stages)
    rp, lanes, pack = _lanes(r, n, tiles.cols)
    per_program = tiles.rows * tiles.blocks
    programs, done = m // per_program, m // per_program * per_program
    steps = n // (tiles.cols * pack)
    fp = jnp.pad(f.astype(a.dtype), ((0, 0), (0, lanes - r)))
    w_done = w[:done].astype(a.dtype)
    wp = jnp.stack([jnp.pad(w_done, ((0, 0), (q * rp, lanes - q * rp - r))) for q in range(pack)])
    af, parts = pl.pallas_call(
        functools.partial(_kernel, tiles, steps, pack),
        grid=(programs,),
        out_shape=(
            jax.ShapeDtypeStruct((done, lanes), acc_dtype),
            jax.ShapeDtypeStruct((programs, n // pack, lanes), acc_dtype),
        ),
        name="one_read_products",
        interpret=interpret,
        compiler_params=params,
    )(a, fp, wp)
    # part rows j·cols + i, lanes q·rp + k hold column (j·pack + q)·cols + i, rank k
    atw = parts.sum(0)[:, : pack * rp].reshape(steps, tiles.cols, pack, rp)[..., :r]
    af, atw = af[:, :r], atw.transpose(0, 2, 1, 3).reshape(n, r)
    if done < m:
        rest_af, rest_atw = _xla(a[done:], f.astype(a.dtype), w[done:].astype(a.dtype))
        af, atw = jnp.concatenate([af, rest_af]), atw + rest_atw
    return af, atw
