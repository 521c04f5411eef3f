"""A dense layer with a choice of how its bias gradient is formed.

``bias_grad="reduce"``: autodiff of ``y + bias`` (the bias broadcast over the batch and token
axes) sums the output gradient over those axes, a reduction XLA fuses with its neighbours.
``bias_grad="gemv"``: :func:`add_bias`'s custom gradient

    d bias = ones(N) @ dy.reshape(N, prod(features))     (f32 accumulation, N = leading elements)

one matrix-vector product. The forward pass is the plain sum either way. Neither is faster
everywhere (ViT-B/16, batch 256, H200; docs/benchmarks.md, calls 46-49): in the GLoRA steps with
one subnet per step the reductions made XLA lay the residual stream out batch-minor and transpose
it back for every other consumer (9.7 ms of a 68 ms step), which the GEMV avoids (+5% supernet
K=1, +7% fixed subnet); in full fine-tuning, biases-only and the K=4 supernet the GEMV's extra
read of dy costs 3-9%. ``experiments.methods.bias_grad_for`` picks per method.

:class:`Dense` is ``flax.linen.DenseGeneral`` (and, with one contracting axis and an int
``features``, ``flax.linen.Dense``) with that choice: the same param names, shapes and
initialisation, so checkpoints and param trees do not change.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal, cast, get_args

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from peft_core.activation_grads import register_dense

Initializer = Any  # (rng, shape, dtype) -> array
BiasGrad = Literal["reduce", "gemv"]
BIAS_GRADS: tuple[str, ...] = get_args(BiasGrad)


def check_bias_grad(bias_grad: str) -> BiasGrad:
    """``bias_grad`` if it is one of BIAS_GRADS, else a ValueError."""
    if bias_grad not in BIAS_GRADS:
        raise ValueError(f"bias_grad must be one of {BIAS_GRADS}, got {bias_grad!r}")
    return cast(BiasGrad, bias_grad)


def add_bias(y: jax.Array, bias: jax.Array, bias_grad: BiasGrad) -> jax.Array:
    """y (..., *F) + bias (*F), broadcast over the leading axes. The bias gradient: with "gemv"
    ``ones(N) @ dy.reshape(N, prod F)`` accumulated in float32 (N: the leading axes' size), with
    "reduce" autodiff's sum over the leading axes."""
    check_bias_grad(bias_grad)
    if y.dtype != bias.dtype:
        raise ValueError(f"add_bias needs one dtype, got y {y.dtype} and bias {bias.dtype}")
    if y.shape[y.ndim - bias.ndim :] != bias.shape:
        raise ValueError(f"bias {bias.shape} does not match the trailing axes of y {y.shape}")
    if bias_grad == "reduce":
        return y + bias
    return _add_bias(bias.ndim, y, bias)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _add_bias(bias_ndim: int, y: jax.Array, bias: jax.Array) -> jax.Array:
    return y + bias


def _add_bias_fwd(bias_ndim: int, y: jax.Array, bias: jax.Array) -> tuple[jax.Array, None]:
    return y + bias, None


def _add_bias_bwd(bias_ndim: int, _: None, dy: jax.Array) -> tuple[jax.Array, jax.Array]:
    features = dy.shape[dy.ndim - bias_ndim :]
    rows = dy.reshape(-1, math.prod(features))
    ones = jnp.ones((rows.shape[0],), dy.dtype)
    dbias = jnp.dot(ones, rows, preferred_element_type=jnp.promote_types(dy.dtype, jnp.float32))
    return dy, dbias.astype(dy.dtype).reshape(features)


_add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


@register_dense  # computes x · kernel + bias over x's trailing axes: taps may serve it
class Dense(nn.Module):
    """x (..., *in) -> x · kernel (*in, *features) + bias (*features), contracting ``axis``.

    Params and initialisation as ``flax.linen.DenseGeneral`` (the kernel initialiser sees the
    flat shape (prod in, prod features), the bias one (prod features,)); compute in ``dtype``
    (None: promoted from the inputs and params). The bias enters through :func:`add_bias` with
    ``bias_grad``; with ``skip_bias`` it is created (the param tree keeps its layout) but not
    added, for a caller that has shown it has no effect (an attention layer's key projection).
    ``input_offset`` c (*in) is a vector the caller would have added to every input: the layer
    computes (x + c) · kernel + bias as x · kernel + (c · kernel + bias), so c costs one
    vector-matrix product instead of a pass over x.
    """

    features: int | tuple[int, ...]
    axis: int | tuple[int, ...] = -1
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros
    bias_grad: BiasGrad = "reduce"
    skip_bias: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, input_offset: jax.Array | None = None) -> jax.Array:
        features = self.features if isinstance(self.features, tuple) else (self.features,)
        axes = self.axis if isinstance(self.axis, tuple) else (self.axis,)
        axes = tuple(a % x.ndim for a in axes)
        if list(axes) != list(range(x.ndim - len(axes), x.ndim)):
            raise ValueError(
                f"Dense contracts trailing axes only, got axis {self.axis} of {x.shape}"
            )
        in_shape = tuple(x.shape[a] for a in axes)
        kernel = self.param(
            "kernel", _flat_init(self.kernel_init, len(in_shape)), in_shape + features,
            self.param_dtype,
        )  # fmt: skip
        bias = self.param("bias", _flat_init(self.bias_init, 0), features, self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        contract = tuple(range(len(in_shape)))
        y = jax.lax.dot_general(x, kernel, ((axes, contract), ((), ())))
        if input_offset is not None:
            if self.skip_bias:
                raise ValueError("Dense takes an input_offset only where it adds its bias")
            if input_offset.shape != in_shape:
                raise ValueError(f"input_offset {input_offset.shape} is not the input {in_shape}")
            acc = jnp.promote_types(kernel.dtype, jnp.float32)
            shift = jax.lax.dot_general(
                input_offset.astype(kernel.dtype), kernel, ((contract, contract), ((), ())),
                preferred_element_type=acc,
            )  # fmt: skip
            bias = (bias.astype(acc) + shift).astype(bias.dtype)
        if self.skip_bias:
            return y
        return add_bias(y, bias, self.bias_grad)


def _flat_init(init: Initializer, num_in_axes: int) -> Initializer:
    """``init`` called on (prod of the first ``num_in_axes`` axes, prod of the rest), reshaped;
    with ``num_in_axes`` = 0 on (prod of all,)."""

    def wrapped(rng: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        flat: tuple[int, ...] = (int(np.prod(shape[num_in_axes:])),)
        if num_in_axes:
            flat = (int(np.prod(shape[:num_in_axes])), *flat)
        return jnp.reshape(init(rng, flat, dtype), shape)

    return wrapped
