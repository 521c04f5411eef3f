"""A/B record (not project code): ConvNeXt's depthwise 7x7 convs as Pallas (Triton) kernels
instead of cuDNN's, which ran at about 0.5 TB/s (6.6 ms of the 24.7 ms FLoRA step, call 81) and
whose autotuning can go wrong (calls 85-86).

Three kernels on NHWC, stride 1, any padding, one program per (batch block, row tile, channel
tile); the input is zero-padded by XLA first so every load is in bounds (one extra pass):
    forward        y[n, h, w, c]  = Σ_ij xp[n, h+i, w+j, c] k[i, j, c]        (f32 accumulation)
    input gradient dx = the forward on dy padded by (K-1-low, K-1-high), kernel flipped
    kernel grad.   dk[i, j, c]    = Σ_nhw xp[n, h+i, w+j, c] dy[n, h, w, c] (partials per
                   program, summed by XLA)
Each program holds a (TH, WP, TC) tile (WP = the output width rounded up to a power of two) and
loads the 49 shifted windows of its input slab (L1/L2 hits after the first).

``DWCONV=pallas`` routes every depthwise ``nn.Conv`` of the model through them (a flax
interceptor; the model is not edited); ``cudnn``: as committed. ``--check`` (CPU, Pallas's
interpret mode): the tiny ConvNeXt's loss and gradients against the model's own conv, and each
kernel against lax on ConvNeXt-T's four stage shapes at batch 2 (on a GPU: the Triton
kernels). ``--micro``: ms per call of the forward and of the two gradients, Pallas against
lax/cuDNN, on ConvNeXt-T's stage shapes at batch 128 (bf16), for each tile config in
``DW_CONFIGS`` ("TILE,TC,WARPS;...", elements per program tile, channels per program, warps). Prepared after call 88; on
the GPU (calls 91-93) the kernels match lax (cuDNN at Precision.HIGHEST) within 3.3e-7, but the
first stage's vjp takes 3.4-6.0 ms against cuDNN's 0.53 (forward 0.54-2.6 against 0.32): not
adopted.

    python dwconv_pallas_ab.py --check
    python dwconv_pallas_ab.py --micro
    DWCONV=pallas python dwconv_pallas_ab.py --json out.json --suites conv --only '/flora-r8@'
"""

from __future__ import annotations

import functools
import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plt

from bench import jax_suite
from experiments.models.convnext import convnext_for_tests

MODE = os.environ.get("DWCONV", "cudnn")
INTERPRET = jax.default_backend() == "cpu"
TILE = 4096  # elements per program's (TH, WP, TC) tile
TC = 32  # channels per program at most (the largest power of two dividing C, up to this)
ROWS_PER_PARTIAL = 512  # kernel gradient: about this many output rows (n, h) per program
WARPS, STAGES = 4, 1
if "DW_CONFIG" in os.environ:  # "TILE,TC,WARPS" for a training row (added for call 92)
    TILE, TC, WARPS = map(int, os.environ["DW_CONFIG"].split(","))
DIMS = ("NHWC", "HWIO", "NHWC")
#: ConvNeXt-T's depthwise convs at 224 px: (side, channels, pads), the last with a4b4cc2's padding
STAGES_T = [(56, 96, ((3, 3),) * 2), (28, 192, ((3, 3),) * 2), (14, 384, ((3, 3),) * 2),
            (7, 768, ((3, 4),) * 2)]  # fmt: skip


def _params():
    return dict(
        interpret=INTERPRET,
        compiler_params=None
        if INTERPRET
        else plt.CompilerParams(num_warps=WARPS, num_stages=STAGES),
    )


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _tiles(ho: int, wo: int, c: int) -> tuple[int, int, int, int]:
    """(TH, WP, TC, row tiles) for an (ho, wo) output with c channels."""
    tc = min(TC, c & -c)
    wp = _pow2(wo)
    th = min(_pow2(ho), max(1, TILE // (wp * tc)))
    return th, wp, tc, -(-ho // th)


def _pad_input(x, pads, kh, kw, ho, wo):
    """x zero-padded by ``pads`` and further at the high ends, so that every row tile and the
    power-of-two width (plus the kernel's reach) are in bounds."""
    th, wp, _, tiles = _tiles(ho, wo, x.shape[-1])
    (pt, pb), (pl_, pr) = pads
    rows, cols = tiles * th + kh - 1, wp + kw - 1
    high_h = rows - x.shape[1] - pt
    high_w = cols - x.shape[2] - pl_
    zero = jnp.zeros((), x.dtype)
    return lax.pad(x, zero, ((0, 0, 0), (pt, high_h, 0), (pl_, high_w, 0), (0, 0, 0)))


def _forward_kernel(kh, kw, th, wp, x_ref, k_ref, y_ref):
    h0 = pl.program_id(1) * th
    acc = jnp.zeros((th, wp, y_ref.shape[-1]), jnp.float32)
    for i in range(kh):
        for j in range(kw):
            xs = x_ref[pl.ds(h0 + i, th), pl.ds(j, wp), :].astype(jnp.float32)
            acc += xs * k_ref[i, j, :].astype(jnp.float32)[None, None, :]
    y_ref[...] = acc.astype(y_ref.dtype)


def _correlate(xp, k, ho, wo):
    """y (N, ho, wo, C) = Σ_ij xp[:, h+i, w+j] k[i, j] for xp from ``_pad_input``; k (kh, kw, C)."""
    n, rows, cols, c = xp.shape
    kh, kw = k.shape[:2]
    th, wp, tc, tiles = _tiles(ho, wo, c)
    y = pl.pallas_call(
        functools.partial(_forward_kernel, kh, kw, th, wp),
        grid=(n, tiles, c // tc),
        in_specs=[
            pl.BlockSpec((None, rows, cols, tc), lambda b, t, q: (b, 0, 0, q)),
            pl.BlockSpec((kh, kw, tc), lambda b, t, q: (0, 0, q)),
        ],
        out_specs=pl.BlockSpec((None, th, wp, tc), lambda b, t, q: (b, t, 0, q)),
        out_shape=jax.ShapeDtypeStruct((n, tiles * th, wp, c), xp.dtype),
        **_params(),
    )(xp, k)
    return y[:, :ho, :wo]


def _kernel_grad_kernel(kh, kw, th, wp, nb, x_ref, g_ref, p_ref):
    h0 = pl.program_id(1) * th
    tc = p_ref.shape[-1]

    def one_image(b, totals):
        g = g_ref[b, pl.ds(h0, th), :, :].astype(jnp.float32)
        out = []
        for i in range(kh):
            for j in range(kw):
                xs = x_ref[b, pl.ds(h0 + i, th), pl.ds(j, wp), :].astype(jnp.float32)
                out.append(totals[i * kw + j] + jnp.sum((xs * g).reshape(th * wp, tc), axis=0))
        return tuple(out)

    zeros = tuple(jnp.zeros((tc,), jnp.float32) for _ in range(kh * kw))
    totals = lax.fori_loop(0, nb, one_image, zeros)
    for i in range(kh):
        for j in range(kw):
            p_ref[i, j, :] = totals[i * kw + j]


def _kernel_gradient(xp, dy, kh, kw):
    """dk (kh, kw, C) f32 = Σ_nhw xp[n, h+i, w+j] dy[n, h, w] for xp from ``_pad_input``."""
    n, ho, wo, c = dy.shape
    th, wp, tc, tiles = _tiles(ho, wo, c)
    g = jnp.pad(dy, ((0, 0), (0, tiles * th - ho), (0, wp - wo), (0, 0)))
    nb = max(1, min(n, ROWS_PER_PARTIAL // (tiles * th)))
    while n % nb:
        nb -= 1
    _, rows, cols, _ = xp.shape
    parts = pl.pallas_call(
        functools.partial(_kernel_grad_kernel, kh, kw, th, wp, nb),
        grid=(n // nb, tiles, c // tc),
        in_specs=[
            pl.BlockSpec((nb, rows, cols, tc), lambda b, t, q: (b, 0, 0, q)),
            pl.BlockSpec((nb, tiles * th, wp, tc), lambda b, t, q: (b, 0, 0, q)),
        ],
        out_specs=pl.BlockSpec((None, None, kh, kw, tc), lambda b, t, q: (b, t, 0, 0, q)),
        out_shape=jax.ShapeDtypeStruct((n // nb, tiles, kh, kw, c), jnp.float32),
        **_params(),
    )(xp, g)
    return parts.sum((0, 1))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_conv(x, k, pads):
    """x (N, H, W, C), k (kh, kw, C), pads ((top, bottom), (left, right)) -> stride-1 depthwise
    correlation, as ``lax.conv_general_dilated(..., feature_group_count=C)``."""
    kh, kw = k.shape[:2]
    ho = x.shape[1] + sum(pads[0]) - kh + 1
    wo = x.shape[2] + sum(pads[1]) - kw + 1
    return _correlate(_pad_input(x, pads, kh, kw, ho, wo), k, ho, wo)


def _fwd(x, k, pads):
    return depthwise_conv(x, k, pads), (x, k)


def _bwd(pads, res, dy):
    x, k = res
    kh, kw = k.shape[:2]
    (pt, pb), (pl_, pr) = pads
    back = ((kh - 1 - pt, kh - 1 - pb), (kw - 1 - pl_, kw - 1 - pr))
    h, w = x.shape[1:3]
    dx = _correlate(_pad_input(dy, back, kh, kw, h, w), k[::-1, ::-1], h, w)
    ho, wo = dy.shape[1:3]
    dk = _kernel_gradient(_pad_input(x, pads, kh, kw, ho, wo), dy, kh, kw)
    return dx, dk.astype(k.dtype)


depthwise_conv.defvjp(_fwd, _bwd)


def lax_depthwise(x, k, pads, precision=None):
    return lax.conv_general_dilated(
        x, k[:, :, None, :], (1, 1), pads, dimension_numbers=DIMS,
        feature_group_count=x.shape[-1], precision=precision,
    )  # fmt: skip


def interceptor(next_fun, args, kwargs, context):
    m = context.module
    if (
        context.method_name != "__call__"
        or not isinstance(m, nn.Conv)
        or m.feature_group_count == 1
        or m.is_initializing()
    ):
        return next_fun(*args, **kwargs)
    x = args[0].astype(m.dtype)
    k = m.get_variable("params", "kernel").astype(m.dtype)[:, :, 0, :]
    b = m.get_variable("params", "bias").astype(m.dtype)
    return depthwise_conv(x, k, tuple(tuple(p) for p in m.padding)) + b


def _relative(a, b):
    return float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))


def check():
    rng = np.random.default_rng(0)
    for h, c, pads in STAGES_T:
        x = jnp.asarray(rng.normal(size=(2, h, h, c)), jnp.float32)
        k = jnp.asarray(rng.normal(size=(7, 7, c)), jnp.float32)
        y_ref, vjp_ref = jax.vjp(
            functools.partial(lax_depthwise, pads=pads, precision=lax.Precision.HIGHEST), x, k
        )  # HIGHEST: cuDNN's f32 kernel gradient is otherwise TF32 on a GPU (call 91: 3e-4)
        y, vjp = jax.vjp(functools.partial(depthwise_conv, pads=pads), x, k)
        dy = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
        grads = zip(vjp(dy), vjp_ref(dy), strict=True)
        errs = [_relative(y, y_ref)] + [_relative(a, b) for a, b in grads]
        print(f"{h}x{h}x{c} pads {pads[0]}: y, dx, dk relative differences {errs}")
        assert max(errs) < 1e-5, errs
    model = convnext_for_tests()
    x = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
    params = model.init(jax.random.key(0), x)["params"]
    w = rng.normal(size=(2, 10)).astype(np.float32)

    def loss(p, x):
        return jnp.sum(model.apply({"params": p}, x) * w)

    with jax.default_matmul_precision("highest"):  # no TF32 in either side's convs and dots
        ref = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x)
        with nn.intercept_methods(interceptor):
            got = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x)
    err = max(
        _relative(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True)
    )
    print(f"tiny ConvNeXt: loss and every gradient within {err:.2e} of the model's own conv")
    assert err < 1e-5


def micro(batch: int = 128) -> None:
    """ms per call, lax (cuDNN) and the Pallas kernels under each ``DW_CONFIGS`` entry
    ("TILE,TC,WARPS;..."; default: the module's)."""
    from bench.timing import TimingSettings, time_calls

    global TILE, TC, WARPS
    configs = os.environ.get("DW_CONFIGS", f"{TILE},{TC},{WARPS}")
    forms = [("lax", lax_depthwise, None)] + [
        (f"pallas {c}", depthwise_conv, tuple(map(int, c.split(",")))) for c in configs.split(";")
    ]
    settings = TimingSettings(warmup=5, repeats=20, window=10)
    rng = np.random.default_rng(0)
    for h, c, pads in STAGES_T:
        x = jnp.asarray(rng.normal(size=(batch, h, h, c)), jnp.bfloat16)
        k = jnp.asarray(rng.normal(size=(7, 7, c)) * 0.1, jnp.bfloat16)
        dy = jnp.asarray(rng.normal(size=lax_depthwise(x, k, pads).shape), jnp.bfloat16)
        line = [f"{batch}x{h}x{h}x{c}"]
        for name, conv, config in forms:
            if config is not None:
                TILE, TC, WARPS = config
            f = functools.partial(conv, pads=pads)
            fwd = jax.jit(f)
            bwd = jax.jit(lambda x, k, dy, f=f: jax.vjp(f, x, k)[1](dy))
            args = (x, k, dy)
            try:
                t_f = time_calls(lambda i, a=args, g=fwd: g(*a[:2]), sync=jax.block_until_ready,
                                 settings=settings)  # fmt: skip
                t_b = time_calls(lambda i, a=args, g=bwd: g(*a), sync=jax.block_until_ready,
                                 settings=settings)  # fmt: skip
            except Exception as e:  # a config Triton cannot compile: say so, go on
                line.append(f"{name} failed: {type(e).__name__}: {str(e)[:200]}")
                continue
            line.append(f"{name} fwd {t_f.median_s * 1e3:.3f} ms, vjp {t_b.median_s * 1e3:.3f} ms")
        print(" | ".join(line), flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        check()
        sys.exit(0)
    if sys.argv[1:] == ["--micro"]:
        micro()
        sys.exit(0)
    print("DWCONV:", MODE, flush=True)
    if MODE == "cudnn":
        sys.exit(jax_suite.main(sys.argv[1:]))
    if MODE != "pallas":
        raise SystemExit(f"DWCONV={MODE!r}: expected 'cudnn' or 'pallas'")
    with nn.intercept_methods(interceptor):
        sys.exit(jax_suite.main(sys.argv[1:]))
