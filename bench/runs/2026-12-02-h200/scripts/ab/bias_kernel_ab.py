"""A/B prototype (not project code; written in the twenty-fourth session, which had no device,
checked on the CPU only): the dense layers' bias gradient formed by the kernel's own
weight-gradient GEMM, [x | 1]ᵀ dy, instead of a separate GEMV over dy.

Why (call 96's profile, GLoRA supernet K=1 at 256): the bias gradients are 44 Triton GEMVs per
step, 2.80 ms at 45% of HBM bandwidth, 1.59 ms of it the 11 fc1 ones (dy bf16[50688, 3072]);
GLoRA forms every adapted kernel's weight gradient G = xᵀ dy anyway. With a ones column
appended to x (and zeros up to a multiple of ``BIASK_PAD``), the same GEMM gives G and, as its
extra row, d bias = 1ᵀ dy: fc1's x is 768 wide, so the column costs a pass over x (78 MB) or
nothing if XLA fuses the concatenation into the GEMM, against the 311 MB GEMV over dy.

``BIASK=kernel`` puts every ``Dense`` whose output is at least ``BIASK_MIN_RATIO`` times as wide
as its input (default 1: query, out and fc1, not fc2 whose x is 3072 wide) through
``dense_bias``, a custom VJP over (x, kernel, bias). Its forward is the layer's own
``x · kernel + bias``; its backward forms dx = dy kernelᵀ and, as the inputs are perturbed
(``symbolic_zeros``: a frozen kernel or bias gets no GEMM), [dW ; db] in one GEMM, dW alone,
or db alone as the GEMV. ``BIASK=gemv``: the code as committed.

    JAX_PLATFORMS=cpu python bias_kernel_ab.py --check     # gradients against the committed code
    python bias_kernel_ab.py --micro     # ms per call: xᵀdy, xᵀdy + GEMV, [x | 1]ᵀ dy
    BIASK=kernel python bias_kernel_ab.py --json out.json --suites train --train-batches 256 \\
        --only '^jax/train/(glora-supernet-k1|glora-fixed)@256$'
"""

from __future__ import annotations

import functools
import math
import os
import sys
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bench import jax_suite
from experiments.models import attention, dense, vit

MODE = os.environ.get("BIASK", "gemv")
PAD = int(os.environ.get("BIASK_PAD", "8"))
MIN_RATIO = float(os.environ.get("BIASK_MIN_RATIO", "1"))
#: (tokens, fan_in, fan_out) of ViT-B/16 at batch 256: fc1, query / out, fc2
SHAPES = [
    (int(os.environ.get("BIASK_ROWS", "50688")), i, o)
    for i, o in [(768, 3072), (768, 768), (3072, 768)]
]


def _dot(x: jax.Array, kernel: jax.Array, n_in: int) -> jax.Array:
    axes = tuple(range(x.ndim - n_in, x.ndim))
    return lax.dot_general(x, kernel, ((axes, tuple(range(n_in))), ((), ())))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def dense_bias(x: jax.Array, kernel: jax.Array, bias: jax.Array, n_in: int) -> jax.Array:
    """x (..., *in) · kernel (*in, *F) + bias (*F), ``n_in`` = len(in)."""
    return _dot(x, kernel, n_in) + bias


def _fwd(x: Any, kernel: Any, bias: Any, n_in: int) -> tuple[jax.Array, Any]:
    y = _dot(x.value, kernel.value, n_in) + bias.value
    return y, (x.value, kernel.value, bias.value, (x.perturbed, kernel.perturbed, bias.perturbed))


def _bwd(n_in: int, res: Any, dy: Any) -> tuple[Any, Any, Any]:
    x, kernel, bias, (x_on, kernel_on, bias_on) = res
    if isinstance(dy, jax.custom_derivatives.SymbolicZero):
        return None, None, None
    n_out = bias.ndim
    fan_in = math.prod(kernel.shape[:n_in])
    dx = None
    if x_on:
        out_axes = tuple(range(dy.ndim - n_out, dy.ndim))
        dx = lax.dot_general(dy, kernel, ((out_axes, tuple(range(n_in, kernel.ndim))), ((), ())))
    rows = dy.reshape(-1, math.prod(bias.shape))
    xs = x.reshape(-1, fan_in)
    dkernel = dbias = None
    if kernel_on and bias_on:
        width = -(-(fan_in + 1) // PAD) * PAD
        extra = jnp.zeros((xs.shape[0], width - fan_in), xs.dtype).at[:, 0].set(1)
        both = jnp.dot(jnp.concatenate([xs, extra], 1).T, rows)
        dkernel = both[:fan_in].reshape(kernel.shape)
        dbias = both[fan_in].reshape(bias.shape)
    elif kernel_on:
        dkernel = jnp.dot(xs.T, rows).reshape(kernel.shape)
    elif bias_on:
        ones = jnp.ones((rows.shape[0],), rows.dtype)
        dbias = jnp.dot(ones, rows, preferred_element_type=jnp.float32)
        dbias = dbias.astype(rows.dtype).reshape(bias.shape)
    return dx, dkernel, dbias


dense_bias.defvjp(_fwd, _bwd, symbolic_zeros=True)


class KernelBiasDense(dense.Dense):
    """``experiments.models.dense.Dense`` whose bias gradient comes from the kernel's GEMM (module
    docstring) where the output is at least MIN_RATIO times the input; the same params."""

    @nn.compact
    def __call__(self, x: jax.Array, input_offset: jax.Array | None = None) -> jax.Array:
        features = self.features if isinstance(self.features, tuple) else (self.features,)
        axes = self.axis if isinstance(self.axis, tuple) else (self.axis,)
        n_in = len(axes)
        in_shape = x.shape[x.ndim - n_in :]
        kernel = self.param(
            "kernel", dense._flat_init(self.kernel_init, n_in), in_shape + features,
            self.param_dtype,
        )  # fmt: skip
        bias = self.param("bias", dense._flat_init(self.bias_init, 0), features, self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        if input_offset is not None:
            contract = tuple(range(n_in))
            shift = lax.dot_general(
                input_offset.astype(kernel.dtype), kernel, ((contract, contract), ((), ())),
                preferred_element_type=jnp.float32,
            )  # fmt: skip
            bias = (bias.astype(jnp.float32) + shift).astype(bias.dtype)
        if self.skip_bias:
            return _dot(x, kernel, n_in)
        if math.prod(features) < MIN_RATIO * math.prod(in_shape) or self.bias_grad != "gemv":
            return dense.add_bias(_dot(x, kernel, n_in), bias, self.bias_grad)
        return dense_bias(x, kernel, bias, n_in)


def _patch() -> None:
    vit.Dense = KernelBiasDense
    attention.Dense = KernelBiasDense


def check() -> None:
    """GLoRA gradients (random subnet, and a subnet with A = B = none on every qkv layer) of a
    2-block f32 ViT-Ti with bias_grad "gemv", committed Dense against KernelBiasDense."""
    from glora_jax import glora

    model = vit.vit("Ti", patch=16, depth=2, num_classes=5, bias_grad="gemv")
    images = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
    labels = jnp.arange(4) % 5
    params = model.init(jax.random.key(1), images)["params"]
    head = params["head"]["kernel"]  # zero-initialised: no gradient would reach the body
    params["head"]["kernel"] = (
        jax.random.normal(jax.random.key(9), head.shape) / head.shape[0] ** 0.5
    )
    adapter = glora((4, 2))
    aparams = jax.tree.map(
        lambda a: a + 0.05 * jax.random.normal(jax.random.key(2), a.shape),
        adapter.init(jax.random.key(3), params),
    )
    space = adapter.space(params)
    random_cfg = space.sample(jax.random.key(4))
    frozen_qkv = {k: np.asarray(v).copy() for k, v in random_cfg.items()}
    for k, v in frozen_qkv.items():
        if k.endswith("qkv"):
            v[0], v[1] = space.options["A"].index("none"), space.options["B"].index("none")

    def grads(cfg: Any) -> Any:
        def loss(ap: Any) -> jax.Array:
            logits = model.apply({"params": adapter.apply(params, ap, cfg)}, images)
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels])

        return jax.jit(jax.grad(loss))(aparams)

    for name, cfg in [("random subnet", random_cfg), ("qkv frozen", frozen_qkv)]:
        want = grads(cfg)
        _patch()
        got = grads(cfg)
        vit.Dense = attention.Dense = dense.Dense
        worst = max(
            float(jnp.max(jnp.abs(g - w)) / (jnp.max(jnp.abs(w)) + 1e-12))
            for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)
        )
        top = max(float(jnp.max(jnp.abs(w))) for w in jax.tree.leaves(want))
        print(f"{name}: worst leaf max |diff| / max |grad| {worst:.2e} (largest grad {top:.2e})")
        assert worst < 1e-4, worst


def micro() -> None:
    """ms per call of one layer's backward weight-side products at ViT-B/16's batch-256 shapes:
    xᵀdy alone, xᵀdy and the GEMV, and the padded [x | 1]ᵀ dy (PAD 8 and 128)."""
    from bench.timing import TimingSettings, time_calls

    settings = TimingSettings(warmup=5, repeats=30, window=10)
    rng = np.random.default_rng(0)
    for m, fan_in, fan_out in SHAPES:
        x = jnp.asarray(rng.normal(size=(m, fan_in)), jnp.bfloat16)
        dy = jnp.asarray(rng.normal(size=(m, fan_out)), jnp.bfloat16)

        def padded(x: jax.Array, dy: jax.Array, pad: int) -> tuple[jax.Array, jax.Array]:
            (rows, n), width = x.shape, -(-(x.shape[1] + 1) // pad) * pad
            extra = jnp.zeros((rows, width - n), x.dtype).at[:, 0].set(1)
            both = jnp.dot(jnp.concatenate([x, extra], 1).T, dy)
            return both[:n], both[n]

        def gemv(x: jax.Array, dy: jax.Array) -> tuple[jax.Array, jax.Array]:
            ones = jnp.ones((len(dy),), dy.dtype)
            db = jnp.dot(ones, dy, preferred_element_type=jnp.float32).astype(dy.dtype)
            return jnp.dot(x.T, dy), db

        forms = [
            ("xT dy", jax.jit(lambda x, dy: jnp.dot(x.T, dy))),
            ("xT dy + gemv", jax.jit(gemv)),
            ("[x|1] pad 8", jax.jit(functools.partial(padded, pad=8))),
            ("[x|1] pad 128", jax.jit(functools.partial(padded, pad=128))),
        ]
        ref = np.asarray(x, np.float32).T @ np.asarray(dy, np.float32)
        line = [f"x ({m}, {fan_in}), dy ({m}, {fan_out})"]
        for name, f in forms:
            out = f(x, dy)
            err = np.abs(np.asarray(out[0] if isinstance(out, tuple) else out, np.float32) - ref)
            t = time_calls(
                lambda i, f=f, x=x, dy=dy: f(x, dy), sync=jax.block_until_ready, settings=settings
            )
            rel = err.max() / np.abs(ref).max()
            line.append(f"{name} {t.median_s * 1e3:.4f} ms (dW max |err| / max |dW| {rel:.1e})")
        print("\n  ".join(line), flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        check()
        sys.exit(0)
    if sys.argv[1:] == ["--micro"]:
        micro()
        sys.exit(0)
    print("BIASK:", MODE, "pad", PAD, "min ratio", MIN_RATIO, flush=True)
    if MODE == "kernel":
        _patch()
    elif MODE != "gemv":
        sys.exit(f"BIASK must be gemv or kernel, got {MODE!r}")
    sys.exit(jax_suite.main(sys.argv[1:]))
