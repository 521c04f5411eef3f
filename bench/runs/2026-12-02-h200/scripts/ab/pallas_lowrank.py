"""Prototype: LoRA's factor gradients from activations with Pallas (Triton) kernels that read
each activation once at memory speed, against weight-space LoRA (which forms dL/dW = x^T dy).

    python3 scratch_dev/ab/pallas_lowrank.py [--interpret] [--tokens ...]

Forms (y = x (W0 + s A B) in every case; gradients dx, dA, dB):
    frozen        y = x W0, dx only (the bound)
    weight        autodiff through W_eff: dW = x^T dy (M x K x N GEMM), dA = s dW B^T, dB = s A^T dW
    hybrid-xla    custom VJP: y = x W_eff; h = x A; dx = dy W_eff^T; g = dy B^T;
                  dA = s x^T g, dB = s h^T dy   (skinny products by XLA's dot)
    hybrid-splitk the same with the M-contractions as batched (P, M/P) GEMMs summed over P
    hybrid-pallas the same with h, (g, dB) and dA from three Pallas kernels:
                  project(x, A) -> h; over dy: g = dy B^T and dB partials; over x: dA partials
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plt

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.timing import TimingSettings, time_calls  # noqa: E402

RANK = 8
RP = 16  # rank padded for tl.dot (>= 16)
INTERPRET = False
BM = 128
BK = 128
GROUP = 1
WARPS = 4
STAGES = 3


def _params():
    return dict(
        interpret=INTERPRET,
        compiler_params=None if INTERPRET else plt.CompilerParams(num_warps=WARPS, num_stages=STAGES),
    )


def project(x: jax.Array, a: jax.Array) -> jax.Array:
    """x (M, K) @ a (K, RP) -> (M, RP) f32, one pass over x."""
    m, k = x.shape
    bm, bk = _bm(m), _bk(k)

    def kernel(x_ref, a_ref, o_ref):
        def body(i, acc):
            xs = x_ref[:, pl.ds(i * bk, bk)]
            ak = a_ref[pl.ds(i * bk, bk), :]
            return acc + plt.dot(xs, ak)

        o_ref[...] = lax.fori_loop(0, k // bk, body, jnp.zeros((bm, RP), jnp.float32))

    return pl.pallas_call(
        kernel,
        grid=(m // bm,),
        in_specs=[pl.BlockSpec((bm, k), lambda i: (i, 0)), pl.BlockSpec((k, RP), lambda i: (0, 0))],
        out_specs=pl.BlockSpec((bm, RP), lambda i: (i, 0)),
        out_shape=jax.ShapeDtypeStruct((m, RP), jnp.float32),
        **_params(),
    )(x, a)


def _bm(m: int) -> int:
    bm = BM
    while m % bm:
        bm //= 2
    return bm


def _bk(k: int) -> int:
    bk = BK
    while k % bk:
        bk //= 2
    return bk


def _groups(m: int, bm: int) -> int:
    g = GROUP
    while (m // bm) % g:
        g -= 1
    return g


def over_dy(dy: jax.Array, b: jax.Array, h: jax.Array) -> tuple[jax.Array, jax.Array]:
    """dy (M, N), b (RP, N), h (M, RP) -> g = dy b^T (M, RP) f32, dB = h^T dy (RP, N) f32.
    Each program takes G row blocks of bm; its dB partial is accumulated in place."""
    m, n = dy.shape
    bm, bn = _bm(m), _bk(n)
    G = _groups(m, bm)

    def kernel(dy_ref, b_ref, h_ref, g_ref, p_ref):
        for s in range(G):
            rows = pl.ds(s * bm, bm)
            hh = h_ref[rows, :]

            def body(j, acc, rows=rows, hh=hh, s=s):
                cols = pl.ds(j * bn, bn)
                d = dy_ref[rows, cols]
                part = plt.dot(hh, d, trans_a=True)
                if s:
                    part = part + p_ref[0, :, cols]
                p_ref[0, :, cols] = part
                return acc + plt.dot(d, b_ref[:, cols], trans_b=True)

            g_ref[rows, :] = lax.fori_loop(0, n // bn, body, jnp.zeros((bm, RP), jnp.float32))

    g, parts = pl.pallas_call(
        kernel,
        grid=(m // (bm * G),),
        in_specs=[
            pl.BlockSpec((bm * G, n), lambda i: (i, 0)),
            pl.BlockSpec((RP, n), lambda i: (0, 0)),
            pl.BlockSpec((bm * G, RP), lambda i: (i, 0)),
        ],
        out_specs=[
            pl.BlockSpec((bm * G, RP), lambda i: (i, 0)),
            pl.BlockSpec((1, RP, n), lambda i: (i, 0, 0)),
        ],
        out_shape=[
            jax.ShapeDtypeStruct((m, RP), jnp.float32),
            jax.ShapeDtypeStruct((m // (bm * G), RP, n), jnp.float32),
        ],
        **_params(),
    )(dy, b, h)
    return g, parts.sum(0)


def over_x(x: jax.Array, g: jax.Array) -> jax.Array:
    """x (M, K), g (M, RP) -> x^T g (K, RP) f32; each program sums G row blocks of bm."""
    m, k = x.shape
    bm, bk = _bm(m), _bk(k)
    G = _groups(m, bm)

    def kernel(x_ref, g_ref, p_ref):
        @pl.loop(0, k // bk)
        def _(i):
            cols = pl.ds(i * bk, bk)
            acc = jnp.zeros((bk, RP), jnp.float32)
            for s in range(G):
                rows = pl.ds(s * bm, bm)
                acc += plt.dot(x_ref[rows, cols], g_ref[rows, :], trans_a=True)
            p_ref[0, cols, :] = acc

    parts = pl.pallas_call(
        kernel,
        grid=(m // (bm * G),),
        in_specs=[
            pl.BlockSpec((bm * G, k), lambda i: (i, 0)),
            pl.BlockSpec((bm * G, RP), lambda i: (i, 0)),
        ],
        out_specs=pl.BlockSpec((1, k, RP), lambda i: (i, 0, 0)),
        out_shape=jax.ShapeDtypeStruct((m // (bm * G), k, RP), jnp.float32),
        **_params(),
    )(x, g)
    return parts.sum(0)


def frozen(x, w0, a, b):
    return x @ w0.astype(x.dtype)


def weight(x, w0, a, b):
    return x @ (w0 + a @ b).astype(x.dtype)


def _pad(a, axis):
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, RP - a.shape[axis])
    return jnp.pad(a, widths)


def hybrid(kind: str):
    @jax.custom_vjp
    def layer(x, w0, a, b):
        return weight(x, w0, a, b)

    def fwd(x, w0, a, b):
        w = (w0 + a @ b).astype(x.dtype)
        ap = _pad(a, 1).astype(x.dtype)
        if kind == "pallas":
            h = project(x, ap).astype(x.dtype)
        else:
            h = jnp.dot(x, ap, preferred_element_type=jnp.float32).astype(x.dtype)
        return x @ w, (x, h, w, _pad(b, 0).astype(x.dtype))

    def bwd(res, dy):
        x, h, w, bp = res
        dx = dy @ w.T
        f32 = jnp.float32
        if kind == "pallas":
            g, db = over_dy(dy, bp, h)
            da = over_x(x, g.astype(x.dtype))
        elif kind == "splitk":
            m = x.shape[0]
            p = 197 if m % 197 == 0 else 1
            g = jnp.dot(dy, bp.T, preferred_element_type=f32).astype(x.dtype)
            r = lambda t: t.reshape(p, m // p, t.shape[1])  # noqa: E731
            da = jnp.einsum("pmi,pmr->ir", r(x), r(g), preferred_element_type=f32)
            db = jnp.einsum("pmr,pmo->ro", r(h), r(dy), preferred_element_type=f32)
        else:
            g = jnp.dot(dy, bp.T, preferred_element_type=f32).astype(x.dtype)
            da = jnp.einsum("mi,mr->ir", x, g, preferred_element_type=f32)
            db = jnp.einsum("mr,mo->ro", h, dy, preferred_element_type=f32)
        return dx, jnp.zeros_like(w0_like(w)), da[:, :RANK], db[:RANK]

    layer.defvjp(fwd, bwd)
    return layer


def w0_like(w):
    return jnp.zeros(w.shape, jnp.float32)


FORMS = {
    "frozen": frozen,
    "weight": weight,
    "hybrid-xla": hybrid("xla"),
    "hybrid-splitk": hybrid("splitk"),
    "hybrid-pallas": hybrid("pallas"),
}


def gradient_fn(form, *, train_factors):
    def loss(x, a, b, w0, c):
        return jnp.vdot(form(x, w0, a, b).astype(jnp.float32), c)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2) if train_factors else (0,)))


def inputs(tokens, fan_in, fan_out, seed):
    k = jax.random.split(jax.random.key(seed), 5)
    x = jax.random.normal(k[0], (tokens, fan_in), jnp.bfloat16)
    a = jax.random.normal(k[1], (fan_in, RANK)) / np.sqrt(fan_in)
    b = jax.random.normal(k[2], (RANK, fan_out)) * 0.1
    w0 = jax.random.normal(k[3], (fan_in, fan_out)) / np.sqrt(fan_in)
    return x, a, b, w0, jax.random.normal(k[4], (tokens, fan_out))


def rel(got, want):
    return [
        float(jnp.linalg.norm((g - w).astype(jnp.float32)) / jnp.linalg.norm(w.astype(jnp.float32)))
        for g, w in zip(got, want, strict=True)
    ]


def main():
    global INTERPRET, BM, BK, WARPS, STAGES, GROUP
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, nargs="+", default=[50432, 12608])
    p.add_argument("--shapes", nargs="+", default=["768x768", "768x3072", "3072x768"])
    p.add_argument("--forms", nargs="+", default=list(FORMS))
    p.add_argument("--interpret", action="store_true")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--bm", type=int, default=128)
    p.add_argument("--bk", type=int, default=128)
    p.add_argument("--warps", type=int, default=4)
    p.add_argument("--stages", type=int, default=3)
    p.add_argument("--group", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    INTERPRET, BM, BK, WARPS, STAGES, GROUP = (args.interpret, args.bm, args.bk, args.warps,
                                               args.stages, args.group)
    settings = TimingSettings(warmup=5, repeats=args.repeats, input_sets=3, window=5)
    rows = []
    for m in args.tokens:
        for s in args.shapes:
            fi, fo = (int(v) for v in s.split("x"))
            sets = [inputs(m, fi, fo, seed) for seed in range(3)]
            ref = gradient_fn(weight, train_factors=True)(*sets[0])
            for name in args.forms:
                trains = name != "frozen"
                fn = gradient_fn(FORMS[name], train_factors=trains)
                try:
                    err = rel(fn(*sets[0]), ref) if trains else []
                    t = time_calls(lambda i: fn(*sets[i % 3]), sync=jax.block_until_ready,
                                   settings=settings)
                    ms = t.median_s * 1e3
                except Exception as e:  # noqa: BLE001
                    print(f"M={m} {s} {name}: FAILED {type(e).__name__}: {str(e)[:400]}", flush=True)
                    continue
                rows.append(dict(tokens=m, shape=s, form=name, ms=ms, err=err, bm=BM, bk=BK,
                                 warps=WARPS, stages=STAGES, group=GROUP))
                print(f"M={m} {s:9s} {name:14s} {ms:8.3f} ms  err dx/dA/dB {err}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(dict(device=str(jax.devices()[0]), rows=rows), indent=1))


if __name__ == "__main__":
    main()
