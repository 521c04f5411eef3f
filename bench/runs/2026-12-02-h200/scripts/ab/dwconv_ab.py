"""A/B record (not project code): ConvNeXt's depthwise convs as 49 shifted multiply-adds that
XLA fuses (one pass over the padded input, f32 accumulation) instead of cuDNN's depthwise
kernels, which ran at about a tenth of HBM bandwidth in call 77's profile.

``DWCONV=shift``: the forward and the input gradient as shifted sums (a custom VJP; the
kernel gradient stays lax's conv transpose, cuDNN's backward-filter conv); ``shift-all``: the
kernel gradient too, by autodiff of the shifted sum (49 reductions); ``cudnn``: as committed.
The model is not edited: a flax interceptor replaces every depthwise ``nn.Conv`` call.
Prepared after call 80 and checked on the CPU only (``--check``: loss and every gradient of the
tiny ConvNeXt within 6e-7 of the model's own conv in float32); not yet run on a GPU.

    python dwconv_ab.py --check                                  # CPU: gradients of all forms
    DWCONV=shift python dwconv_ab.py --json out.json --suites conv   # bench.jax_suite's rows
"""

import functools
import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bench import jax_suite
from experiments.models.convnext import convnext_for_tests

MODE = os.environ.get("DWCONV", "cudnn")
DIMS = ("NHWC", "HWIO", "NHWC")


def lax_conv(x, k, pads):
    """The depthwise conv as flax computes it (no bias): x (N, H, W, C), k (kh, kw, 1, C)."""
    return lax.conv_general_dilated(
        x, k, (1, 1), pads, dimension_numbers=DIMS, feature_group_count=x.shape[-1]
    )


def shifted_sum(x, k, pads):
    """Σ_ij xp[:, i:i+Ho, j:j+Wo, :] k[i, j, 0, :] in f32, rounded to x's dtype; xp is x padded
    by ``pads`` (negative: cropped, as the input gradient's padding can be)."""
    (pt, pb), (pl, pr) = pads
    kh, kw = k.shape[:2]
    xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (pt, pb, 0), (pl, pr, 0), (0, 0, 0)))
    ho, wo = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    f32 = jnp.float32
    acc = sum(
        xp[:, i : i + ho, j : j + wo, :].astype(f32) * k[i, j, 0].astype(f32)
        for i in range(kh)
        for j in range(kw)
    )
    return acc.astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def shifted_conv(x, k, pads):
    return shifted_sum(x, k, pads)


def _fwd(x, k, pads):
    return shifted_sum(x, k, pads), (x, k)


def _bwd(pads, res, dy):
    x, k = res
    kh, kw = k.shape[:2]
    (pt, pb), (pl, pr) = pads
    # dx: the correlation of dy with the flipped kernel, padded so the result is x's size
    back = ((kh - 1 - pt, kh - 1 - pb), (kw - 1 - pl, kw - 1 - pr))
    dx = shifted_sum(dy, k[::-1, ::-1], back)
    _, vjp = jax.vjp(lambda k: lax_conv(x, k, pads), k)
    return dx, vjp(dy)[0]


shifted_conv.defvjp(_fwd, _bwd)

FORMS = {"cudnn": lax_conv, "shift": shifted_conv, "shift-all": shifted_sum}


def interceptor(form, next_fun, args, kwargs, context):
    m = context.module
    if (
        context.method_name != "__call__"
        or not isinstance(m, nn.Conv)
        or m.feature_group_count == 1
        or m.is_initializing()
    ):
        return next_fun(*args, **kwargs)
    x = args[0].astype(m.dtype)
    k = m.get_variable("params", "kernel").astype(m.dtype)
    b = m.get_variable("params", "bias").astype(m.dtype)
    return form(x, k, [tuple(p) for p in m.padding]) + b


def check():
    model = convnext_for_tests()
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    params = model.init(jax.random.key(0), x)["params"]
    w = np.random.default_rng(1).normal(size=(2, 10)).astype(np.float32)

    def loss(p, x):
        return jnp.sum(model.apply({"params": p}, x) * w)

    ref = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x)
    for name, form in FORMS.items():
        with nn.intercept_methods(functools.partial(interceptor, form)):
            got = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x)
        err = max(
            float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True)
        )
        print(f"{name:9s} max relative difference to the model's own conv: {err:.2e}")
        assert err < 1e-5, name


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        check()
        sys.exit(0)
    print("DWCONV:", MODE, flush=True)
    with nn.intercept_methods(functools.partial(interceptor, FORMS[MODE])):
        sys.exit(jax_suite.main(sys.argv[1:]))
