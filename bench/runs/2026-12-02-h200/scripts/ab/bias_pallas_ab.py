"""A/B prototype (not project code; prepared after call 96, checked on the CPU in Pallas's interpret
mode, not yet run on a GPU: call 98 lost its machine): the dense layers' bias gradient
(``bias_grad="gemv"``, the GLoRA steps' choice) as a Pallas (Triton) column sum instead of XLA's
GEMV.

Why (call 96's profile, GLoRA supernet K=1 at 256 against LoRA in weight space): the bias
gradients are 44 Triton GEMVs per step, 2.80 ms, at 45% of HBM bandwidth (fc1's dy,
bf16[50688, 3072], 0.145 ms; the 768-wide ones 0.037 ms). A column sum that reads dy once at
~85% would save about 1.3 ms of the 2.8 ms GLoRA K=1 spends beyond LoRA in weight space.

The kernel: grid (N / BN, F / BF); each program sums its (BN, BF) block of dy in f32, CH rows
at a time, into one row of an f32 (N / BN, F) partial; XLA sums the partials. Under vmap (the
K=4 supernet, with ``BIASP_ALL=1``) the grid gains the subnet axis.

``BIASP=pallas`` re-registers ``experiments.models.dense``'s custom VJP with this column sum
(``BIASP_CONFIG="BN,BF,CH,WARPS"``); ``gemv``: the code as committed. ``BIASP_ALL=1``: every
row forms its bias gradients this way (``bias_grad="gemv"``), not only GLoRA's single-subnet steps.

    JAX_PLATFORMS=cpu python bias_pallas_ab.py --check   # interpret mode, against numpy
    python bias_pallas_ab.py --micro     # ms per call: GEMV, reduce, 4-wide GEMV, Pallas configs
    BIASP=pallas python bias_pallas_ab.py --json out.json --suites train --train-batches 256 \\
        --only '^jax/train/(glora-supernet-k1|glora-fixed)@256$'
"""

from __future__ import annotations

import functools
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plt

from bench import jax_suite
from experiments.models import dense

MODE = os.environ.get("BIASP", "gemv")
INTERPRET = jax.default_backend() == "cpu"
CONFIG = tuple(map(int, os.environ.get("BIASP_CONFIG", "512,128,32,4").split(",")))
#: (rows N, features F) of ViT-B/16 at batch 256 (198 tokens): fc1, the 768-wide ones, qkv
SHAPES = [(50688, 3072), (50688, 768), (50688, 2304)]


def column_sum(rows: jax.Array, config: tuple[int, int, int, int] = CONFIG) -> jax.Array:
    """rows (N, F) -> f32 (F,), Σ over N; blocks of gcd(N, BN) rows (K=4's 12,672 rows per
    subnet at 256: 128); GEMV when BF does not divide F or the rows do not split into CH chunks."""
    bn, bf, ch, warps = config
    n, f = rows.shape
    bn = math.gcd(n, bn)
    if f % bf or bn % ch:
        return jnp.dot(jnp.ones((n,), rows.dtype), rows, preferred_element_type=jnp.float32)

    def kernel(x_ref, o_ref):
        def body(i, acc):
            block = x_ref[pl.ds(pl.multiple_of(i * ch, ch), ch), :].astype(jnp.float32)
            return acc + jnp.sum(block, axis=0, keepdims=True)

        o_ref[...] = lax.fori_loop(0, bn // ch, body, jnp.zeros((1, bf), jnp.float32))

    partial = pl.pallas_call(
        kernel,
        grid=(n // bn, f // bf),
        in_specs=[pl.BlockSpec((bn, bf), lambda i, j: (i, j))],
        out_specs=pl.BlockSpec((1, bf), lambda i, j: (i, j)),
        out_shape=jax.ShapeDtypeStruct((n // bn, f), jnp.float32),
        interpret=INTERPRET,
        compiler_params=None if INTERPRET else plt.CompilerParams(num_warps=warps, num_stages=2),
    )(rows)
    return jnp.sum(partial, axis=0)


def wide_gemv(rows: jax.Array, k: int = 4) -> jax.Array:
    """rows (N, F) -> f32 (F,): ones(N / k) @ rows as (N / k, k F), then the k partials summed:
    the same GEMV with k times the output columns (more programs, shorter loops)."""
    n, f = rows.shape
    wide = rows.reshape(n // k, k * f)
    partial = jnp.dot(jnp.ones((n // k,), rows.dtype), wide, preferred_element_type=jnp.float32)
    return partial.reshape(k, f).sum(0)


def _bwd_pallas(bias_ndim: int, _: None, dy: jax.Array) -> tuple[jax.Array, jax.Array]:
    features = dy.shape[dy.ndim - bias_ndim :]
    dbias = column_sum(dy.reshape(-1, math.prod(features)))
    return dy, dbias.astype(dy.dtype).reshape(features)


def check() -> None:
    rng = np.random.default_rng(0)
    for n, f, config in [
        (1024, 256, (512, 128, 32, 4)),
        (2048, 384, (256, 128, 64, 4)),
        (12672, 128, (512, 128, 32, 4)),
    ]:
        x = rng.normal(size=(n, f)).astype(np.float32)
        got = np.asarray(column_sum(jnp.asarray(x, jnp.bfloat16), config))
        want = np.asarray(jnp.asarray(x, jnp.bfloat16), np.float64).sum(0)
        err = np.abs(got - want).max()
        print(f"({n}, {f}) {config}: max |err| {err:.2e}")
        assert err < 1e-3, err
        err = np.abs(np.asarray(wide_gemv(jnp.asarray(x, jnp.bfloat16))) - want).max()
        print(f"({n}, {f}) gemv 4 wide: max |err| {err:.2e}")
        assert err < 1e-3, err
    batched = jnp.asarray(rng.normal(size=(4, 1024, 256)), jnp.bfloat16)
    err = np.abs(np.asarray(jax.vmap(column_sum)(batched)) - np.asarray(batched, np.float64).sum(1))
    print(f"vmap over 4 (1024, 256): max |err| {err.max():.2e}")
    assert err.max() < 1e-3, err.max()


def micro() -> None:
    from bench.timing import TimingSettings, time_calls

    configs = os.environ.get(
        "BIASP_CONFIGS", "512,128,32,4;512,128,64,8;512,256,32,8;1056,128,32,4;512,64,64,4"
    )
    settings = TimingSettings(warmup=5, repeats=30, window=10)
    rng = np.random.default_rng(0)
    for n, f in SHAPES:
        x = jnp.asarray(rng.normal(size=(n, f)), jnp.bfloat16)
        ref = np.asarray(x, np.float64).sum(0)
        forms = [
            ("gemv", jax.jit(lambda r: jnp.dot(jnp.ones((r.shape[0],), r.dtype), r,
                                               preferred_element_type=jnp.float32))),
            ("reduce", jax.jit(lambda r: jnp.sum(r.astype(jnp.float32), axis=0))),
            ("gemv 4 wide", jax.jit(wide_gemv)),
        ] + [
            (f"pallas {c}", jax.jit(functools.partial(column_sum,
                                                      config=tuple(map(int, c.split(","))))))
            for c in configs.split(";")
        ]  # fmt: skip
        line = [f"({n}, {f}) {n * f * 2 / 1e6:.0f} MB"]
        for name, g in forms:
            try:
                err = np.abs(np.asarray(g(x)) - ref).max()
                t = time_calls(lambda i, g=g: g(x), sync=jax.block_until_ready, settings=settings)
            except Exception as e:  # a config Triton cannot compile: say so, go on
                line.append(f"{name} failed: {type(e).__name__}: {str(e)[:160]}")
                continue
            ms = t.median_s * 1e3
            line.append(f"{name} {ms:.4f} ms {n * f * 2 / t.median_s / 1e9:.0f} GB/s err {err:.1e}")
        print("\n  ".join(line), flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        check()
        sys.exit(0)
    if sys.argv[1:] == ["--micro"]:
        micro()
        sys.exit(0)
    print("BIASP:", MODE, CONFIG, flush=True)
    if MODE == "pallas":
        dense._add_bias.defvjp(dense._add_bias_fwd, _bwd_pallas)
    elif MODE != "gemv":
        sys.exit(f"BIASP must be gemv or pallas, got {MODE!r}")
    if os.environ.get("BIASP_ALL") == "1":
        from bench import jax_train

        jax_train.bias_grad_for = lambda *a, **k: "gemv"
    sys.exit(jax_suite.main(sys.argv[1:]))
