"""A/B record (not project code): the MLP's bias + GELU passes (ViT-B/16 at batch 256: (50688,
3072) bf16) as XLA fuses them against Pallas/Triton kernels of a few block shapes, and a bias
add alone; ms per call (median of 20 windows of 10 calls) and GB/s of the bf16 bytes moved.

    python3 gelu_pallas_micro.py [--interpret --rows 64]
"""

import argparse
import itertools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plt

from experiments.models.activations import _gelu_value, gelu_derivative

p = argparse.ArgumentParser()
p.add_argument("--rows", type=int, default=256 * 198)
p.add_argument("--cols", type=int, default=3072)
p.add_argument("--interpret", action="store_true")
args = p.parse_args()
M, N = args.rows, args.cols
BF = jnp.bfloat16


def xla_bias(h, b):
    return h + b


def xla_fwd(h, b):
    return _gelu_value(h + b, True)


def xla_bwd(h, b, g):
    return (g * gelu_derivative(h + b, True)).astype(BF)


def pallas(kind, bm, bn, warps):
    def kernel(*refs):
        h = refs[0][...].astype(jnp.float32) + refs[1][...].astype(jnp.float32)[None, :]
        if kind == "bias":
            out = h
        elif kind == "fwd":
            out = h / (1.0 + jnp.exp(-2.0 * 0.7978845608028654 * (h + 0.044715 * h * h * h)))
        else:
            s = 1.0 / (1.0 + jnp.exp(-2.0 * 0.7978845608028654 * (h + 0.044715 * h * h * h)))
            d = s + h * s * (1.0 - s) * (2.0 * 0.7978845608028654) * (1.0 + 3.0 * 0.044715 * h * h)
            out = refs[2][...].astype(jnp.float32) * d
        refs[-1][...] = out.astype(BF)

    specs = [pl.BlockSpec((bm, bn), lambda i, j: (i, j)), pl.BlockSpec((bn,), lambda i, j: (j,))]
    if kind == "bwd":
        specs.append(pl.BlockSpec((bm, bn), lambda i, j: (i, j)))
    return pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((M, N), BF),
        grid=(M // bm, N // bn),
        in_specs=specs,
        out_specs=pl.BlockSpec((bm, bn), lambda i, j: (i, j)),
        interpret=args.interpret,
        compiler_params=None if args.interpret else plt.CompilerParams(num_warps=warps, num_stages=1),
    )


def timed(fn, inputs, moved):
    f = jax.jit(fn)
    out = f(*inputs)
    out.block_until_ready()
    samples = []
    for _ in range(20):
        t = time.perf_counter()
        for _ in range(10):
            out = f(*inputs)
        out.block_until_ready()
        samples.append((time.perf_counter() - t) / 10 * 1e3)
    ms = statistics.median(samples)
    return out, ms, moved / ms / 1e6


key = jax.random.key(0)
h = jax.random.normal(key, (M, N), BF)
b = jax.random.normal(jax.random.key(1), (N,), BF) * 0.1
g = jax.random.normal(jax.random.key(2), (M, N), BF)
size = M * N * 2
refs = {}
for kind, fn, inputs, moved in (
    ("bias", xla_bias, (h, b), 2 * size),
    ("fwd", xla_fwd, (h, b), 2 * size),
    ("bwd", xla_bwd, (h, b, g), 3 * size),
):
    out, ms, gbs = timed(fn, inputs, moved)
    refs[kind] = np.asarray(out.astype(jnp.float32))
    print(f"xla    {kind:4s}              {ms:.4f} ms  {gbs:6.0f} GB/s", flush=True)
blocks = [(8, 1024), (16, 512), (32, 256), (16, 1024), (32, 512), (64, 256), (32, 1024), (64, 512)]
if args.interpret:
    blocks = [(8, 1024)]
for kind, (bm, bn), warps in itertools.product(("bias", "fwd", "bwd"), blocks, (4, 8)):
    inputs = (h, b, g) if kind == "bwd" else (h, b)
    moved = (3 if kind == "bwd" else 2) * size
    try:
        out, ms, gbs = timed(pallas(kind, bm, bn, warps), inputs, moved)
    except Exception as e:  # a block shape Triton refuses
        print(f"pallas {kind:4s} {bm:3d}x{bn:4d} w{warps}  failed: {type(e).__name__}", flush=True)
        continue
    err = float(np.max(np.abs(np.asarray(out.astype(jnp.float32)) - refs[kind])))
    print(f"pallas {kind:4s} {bm:3d}x{bn:4d} w{warps}  {ms:.4f} ms  {gbs:6.0f} GB/s  max|diff| {err:.3g}", flush=True)
