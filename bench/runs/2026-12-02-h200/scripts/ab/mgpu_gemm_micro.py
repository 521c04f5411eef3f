"""Micro-benchmark (not project code): ViT-B's fc1 GEMM at batch 256, (50688, 768) @ (768, 3072)
bf16, as XLA forms it (cuBLAS) and as jax's Pallas Mosaic GPU Hopper matmul
(jax.experimental.pallas.ops.gpu.hopper_matmul_mgpu) over a few tile configs; and XLA's GEMM +
bias + GELU (the MLP's forward as the model runs it). Is a hand-written Hopper GEMM, into whose
epilogue the GELU passes could move, as fast as cuBLAS here?

    python3 mgpu_gemm_micro.py
"""

import itertools
import sys
import time
import traceback
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.timing import TimingSettings, time_calls  # noqa: E402
from experiments.models.activations import gelu  # noqa: E402

M, K, N = 50688, 768, 3072
SETTINGS = TimingSettings(warmup=3, repeats=20, input_sets=3, window=10)
keys = jax.random.split(jax.random.key(0), 9)
xs = [jax.random.normal(keys[i], (M, K), jnp.bfloat16) for i in range(3)]
ws = [(jax.random.normal(keys[3 + i], (K, N), jnp.float32) / K**0.5).astype(jnp.bfloat16) for i in range(3)]
bias = jnp.zeros((N,), jnp.bfloat16)
flops = 2 * M * K * N


def bench(name, fn, *extra):
    f = jax.jit(fn)
    t = time_calls(lambda i: f(xs[i % 3], ws[i % 3], *extra), sync=jax.block_until_ready, settings=SETTINGS)
    ms = t.median_s * 1e3
    print(f"{name:60s} {ms:7.4f} ms ({t.p10_s*1e3:.4f}-{t.p90_s*1e3:.4f})  {flops / t.median_s / 1e12:6.1f} TFLOP/s", flush=True)
    return ms


ref_ms = bench("xla dot", lambda a, b: a @ b)
bench("xla dot + bias + gelu (the model's GELU)", lambda a, b, c: gelu(a @ b + c), bias)
bench("xla dot + bias + jax.nn.gelu(tanh)", lambda a, b, c: jax.nn.gelu(a @ b + c, approximate=True), bias)

from jax.experimental.pallas.ops.gpu import hopper_matmul_mgpu as hm  # noqa: E402

want = np.asarray(jax.jit(lambda a, b: a @ b)(xs[0], ws[0]), np.float32)
best = (float("inf"), None)
t0 = time.time()
for tm, tn, steps, minor, width, wg in itertools.product(
    (128,), (128, 64), (4, 3), (hm.MatmulDimension.M, hm.MatmulDimension.N), (1, 8), (hm.MatmulDimension.N, hm.MatmulDimension.M)
):
    if time.time() - t0 > 150:
        print("stopped: time", flush=True)
        break
    cfg = hm.TuningConfig(tile_m=tm, tile_n=tn, tile_k=64, max_concurrent_steps=steps,
                          grid_minor_dim=minor, grid_tile_width=width, wg_dimension=wg)
    try:
        fn = lambda a, b, cfg=cfg: hm.matmul(a, b, None, cfg)
        got = np.asarray(jax.jit(fn)(xs[0], ws[0]), np.float32)
        err = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        ms = bench(f"mgpu {tm}x{tn} steps{steps} minor={minor} w{width} wg={wg} err {err:.1e}", fn)
        best = min(best, (ms, cfg), key=lambda p: p[0])
    except Exception as e:  # noqa: BLE001
        print(f"mgpu {cfg}: {type(e).__name__}: {str(e)[:300]}", flush=True)
        traceback.print_exc(limit=1)
print(f"best mgpu {best[0]:.4f} ms = {ref_ms / best[0]:.3f}x XLA's dot; config {best[1]}", flush=True)
