"""A/B record (not project code): LoRA whose model runs on stop_gradient(W0 + A B) (the
weight-space forward, dx = dy W_eff^T, no dL/dW formed) and whose factor gradients come from a
"tap" added to every adapted layer's output: a custom-VJP term that is zero forward and whose
backward forms dA = x^T (dy B^T), dB = (x A)^T dy from the activations.

``TAP=pallas`` (the skinny products as Pallas/Triton kernels, scratch_dev/ab/pallas_lowrank.py)
or ``TAP=xla`` (XLA's dots). It replaces the bench's lora-r8-activation-prototype row.

    TAP=pallas python tap_ab.py --json out.json --suites train --train-batches 256 \
        --only '^jax/train/(lora-r8|lora-r8-activation-prototype)@256$'
"""

import math
import os
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pallas_lowrank as plk  # noqa: E402

from bench import jax_train  # noqa: E402
from peft_core import Adapter, find_layers, lora  # noqa: E402
from peft_core.paths import flatten  # noqa: E402

MODE = os.environ.get("TAP", "pallas")
KEY = "__tap_lora__"
RP = plk.RP
plk.BM = int(os.environ.get("BM", "128"))
plk.GROUP = int(os.environ.get("GROUP", "1"))


def _factor_grads(x, a, b, dy):
    """x (M, K), a (K, RP), b (RP, N) bf16, dy (M, N) -> dA (K, RP), dB (RP, N) f32."""
    f32 = jnp.float32
    if MODE == "pallas" and x.shape[0] % 16 == 0:
        h = plk.project(x, a).astype(x.dtype)
        g, db = plk.over_dy(dy, b, h)
        return plk.over_x(x, g.astype(x.dtype)), db
    h = jnp.dot(x, a, preferred_element_type=f32).astype(x.dtype)
    g = jnp.dot(dy, b.T, preferred_element_type=f32).astype(x.dtype)
    return (
        jnp.einsum("mi,mr->ir", x, g, preferred_element_type=f32),
        jnp.einsum("mr,mo->ro", h, dy, preferred_element_type=f32),
    )


@jax.custom_vjp
def tap(x, a, b):
    """Zero (M, N); its VJP gives a and b their LoRA gradients."""
    return jnp.zeros((x.shape[0], b.shape[1]), x.dtype)


def _fwd(x, a, b):
    return tap(x, a, b), (x, a, b)


def _bwd(res, dy):
    x, a, b = res
    r = a.shape[1]
    ap = jnp.pad(a.astype(x.dtype), ((0, 0), (0, RP - r)))
    bp = jnp.pad(b.astype(x.dtype), ((0, RP - r), (0, 0)))
    da, db = _factor_grads(x, ap, bp, dy.astype(x.dtype))
    return None, da[:, :r].astype(a.dtype), db[:r].astype(b.dtype)


tap.defvjp(_fwd, _bwd)


def tap_lora(backbone, rank):
    weight_space = lora(rank, targets=backbone.targets)
    in_ndims = {
        layer.name: len(layer.in_shape) for layer in find_layers(backbone.params, backbone.targets)
    }

    def apply(params, aparams, cfg=None):
        merged = weight_space.apply(params, jax.lax.stop_gradient(aparams))
        return {**merged, KEY: aparams}

    def forward(params, images, *, train, rng):
        factors = flatten(params[KEY])
        model_params = {k: v for k, v in params.items() if k != KEY}

        def add_tap(next_fun, args, kwargs, context):
            y = next_fun(*args, **kwargs)
            name = "/".join(context.module.path)
            if context.method_name != "__call__" or name not in in_ndims:
                return y
            x = args[0]
            x2 = x.reshape(-1, math.prod(x.shape[x.ndim - in_ndims[name]:]))
            a, b = factors[f"{name}/a"], factors[f"{name}/b"]
            t = tap(x2.astype(y.dtype), a, b)
            return y + t.reshape(y.shape)

        with nn.intercept_methods(add_tap):
            return backbone.forward(model_params, images, train=train, rng=rng)

    return Adapter(weight_space.init, apply, weight_space.merge), forward


jax_train.activation_lora = tap_lora

if __name__ == "__main__":
    from bench import jax_suite

    print(f"TAP={MODE} BM={plk.BM} GROUP={plk.GROUP}", flush=True)
    sys.exit(jax_suite.main(sys.argv[1:]))
