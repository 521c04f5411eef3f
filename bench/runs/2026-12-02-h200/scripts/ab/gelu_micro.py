"""GELU passes alone (A/B record, not project code): is the ViT-B@256 GELU bound by memory or
by arithmetic? Times elementwise kernels on the MLP's hidden activation, (256*208, 3072) bf16:
forward f(x + b) and backward g * f'(x), for f = identity / relu (memory-only baselines), the
tanh form (jax.nn.gelu, approximate), the same value through exp (x * sigmoid(2u) with the
sigmoid as 1 / (1 + exp(-2u))), and the exact (erf) form. Prints ms and GB/s of each.

    python gelu_micro.py
"""
import math
import sys

import jax
import jax.numpy as jnp

from bench.timing import TimingSettings, time_calls

C, A = math.sqrt(2 / math.pi), 0.044715
M, N = int(__import__("os").environ.get("ROWS", 256 * 208)), 3072
f32 = lambda x: x.astype(jnp.float32)


def u(x):
    return 2 * C * (x + A * x * x * x)


FWD = {
    "bias-only": lambda x: x,
    "relu": lambda x: jnp.maximum(x, 0),
    "tanh (jax.nn.gelu)": lambda x: jax.nn.gelu(x, approximate=True),
    "exp-sigmoid": lambda x: x / (1 + jnp.exp(-u(x))),
    "erf (exact)": lambda x: jax.nn.gelu(x, approximate=False),
}


def d_tanh(x):
    t = jnp.tanh(C * (x + A * x * x * x))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * C * (1 + 3 * A * x * x)


def d_exp(x):
    s = 1 / (1 + jnp.exp(-u(x)))
    return s + x * s * (1 - s) * (2 * C) * (1 + 3 * A * x * x)


BWD = {
    "g * x": lambda x: x,
    "g * (x > 0)": lambda x: (x > 0).astype(x.dtype),
    "tanh derivative (model's)": d_tanh,
    "exp-sigmoid derivative": d_exp,
}


def main():
    settings = TimingSettings(warmup=3, repeats=20, input_sets=3, window=10)
    keys = jax.random.split(jax.random.key(0), 7)
    xs = [jax.random.normal(k, (M, N), jnp.bfloat16) for k in keys[:3]]
    gs = [jax.random.normal(k, (M, N), jnp.bfloat16) for k in keys[3:6]]
    b = jax.random.normal(keys[6], (N,), jnp.bfloat16)
    # numerics of the exp forms against the tanh ones, f32, on a grid
    grid = jnp.linspace(-12, 12, 100001, dtype=jnp.float32)
    print("max |exp-sigmoid - tanh| fwd", float(jnp.max(jnp.abs(FWD["exp-sigmoid"](grid) - FWD["tanh (jax.nn.gelu)"](grid)))),
          "bwd", float(jnp.max(jnp.abs(d_exp(grid) - d_tanh(grid)))))
    nbytes = M * N * 2
    for name, f in FWD.items():
        fn = jax.jit(lambda x, b, f=f: f(f32(x) + f32(b)).astype(jnp.bfloat16))
        t = time_calls(lambda i, fn=fn: fn(xs[i % 3], b), sync=jax.block_until_ready, settings=settings)
        print(f"fwd {name:28s} {t.median_s*1e3:7.3f} ms  {2*nbytes/t.median_s/1e9:7.0f} GB/s", flush=True)
    for name, d in BWD.items():
        fn = jax.jit(lambda g, x, d=d: (f32(g) * d(f32(x))).astype(jnp.bfloat16))
        t = time_calls(lambda i, fn=fn: fn(gs[i % 3], xs[i % 3]), sync=jax.block_until_ready, settings=settings)
        print(f"bwd {name:28s} {t.median_s*1e3:7.3f} ms  {3*nbytes/t.median_s/1e9:7.0f} GB/s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
