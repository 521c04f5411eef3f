"""Micro record (not project code): what a per-layer ``lax.cond`` costs in a jitted, pipelined
GPU step. The question behind it: GLoRA's supernet step could form a layer's weight gradient
G = xᵀ dy only where the sampled subnet needs it (A a LoRA option), if XLA runs a data-dependent
branch without stalling the stream on the host.

48 layers of ViT-B/16's GLoRA shapes at batch 256 (50,432 rows; qkv 768->2304, proj 768->768,
fc1 768->3072, fc2 3072->768), each an x (M, fan_in) and dy (M, fan_out) in bf16; per layer
the "gradient" (xᵀ dy)(f32) @ v, v (fan_out, 8). Per call a fresh key draws which layers need it
(Bernoulli(p)). Variants: always (every layer, no branch), where (every layer, jnp.where on the
result), cond (lax.cond per layer), never (no layer). Interleaved windows (bench.timing).

    python cond_micro.py [--p 0.4] [--window 10] [--repeats 10]
"""

import argparse
import functools

import jax
import jax.numpy as jnp

from bench.timing import TimingSettings, time_interleaved

SHAPES = [(768, 2304), (768, 768), (768, 3072), (3072, 768)] * 12


def grad(x, dy, v):
    g = jnp.einsum("mi,mo->io", x, dy, preferred_element_type=jnp.float32)
    return g @ v


def step(mode, p, data, i):
    need = jax.random.bernoulli(jax.random.fold_in(jax.random.key(0), i), p, (len(SHAPES),))
    outs = []
    for n, (x, dy, v) in enumerate(data):
        zero = jnp.zeros((x.shape[1], v.shape[1]), jnp.float32)
        if mode == "always":
            outs.append(grad(x, dy, v))
        elif mode == "where":
            outs.append(jnp.where(need[n], grad(x, dy, v), zero))
        elif mode == "cond":
            outs.append(jax.lax.cond(need[n], grad, lambda x, dy, v: zero, x, dy, v))
        else:
            outs.append(zero)
    return jnp.stack([o.sum() for o in outs]), need.sum()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--p", type=float, default=0.4)
    ap.add_argument("--rows", type=int, default=256 * 197)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    keys = jax.random.split(jax.random.key(1), 3 * len(SHAPES))
    data = [
        (jax.random.normal(keys[3 * n], (args.rows, fi), jnp.bfloat16),
         jax.random.normal(keys[3 * n + 1], (args.rows, fo), jnp.bfloat16),
         jax.random.normal(keys[3 * n + 2], (fo, 8), jnp.float32))
        for n, (fi, fo) in enumerate(SHAPES)
    ]
    fns = {m: jax.jit(functools.partial(step, m, args.p)) for m in ("always", "where", "cond", "never")}
    for m, f in fns.items():  # results agree where computed
        out, k = f(data, 0)
        print(f"{m}: layers computed in call 0: {int(k)}, sum {float(out.sum()):.4g}", flush=True)
    settings = TimingSettings(warmup=3, repeats=args.repeats, input_sets=1, window=args.window)
    calls = {m: functools.partial(f, data) for m, f in fns.items()}
    times = time_interleaved(calls, sync=jax.block_until_ready, settings=settings)
    mean_need = float(jnp.mean(jnp.stack([fns["never"](data, i)[1] for i in range(200)])))
    for m, t in times.items():
        print(f"{m:7s} {t.median_s * 1e3:8.3f} ms ({t.p10_s * 1e3:.3f}-{t.p90_s * 1e3:.3f})")
    always = times["always"].median_s
    print(f"layers needed per call, mean over 200 calls: {mean_need:.1f} of {len(SHAPES)}; "
          f"cond if free: {always * mean_need / len(SHAPES) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
