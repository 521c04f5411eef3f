"""GELU whose gradient keeps only its input, with the approximate form computed through exp.

``jax.nn.gelu`` differentiated by autodiff saves an intermediate of the forward pass for the
backward one (the tanh of the approximate form), a second activation-sized tensor per MLP: for a
ViT-B at batch 256 that is 310 MB written and read again per block. This GELU's VJP keeps only
the input x (which the MLP's first matmul has produced anyway) and recomputes the derivative
from it. Both passes compute in float32 (at least) and return x's dtype:

    approximate:  gelu(x) = x/2 (1 + tanh(u)) = x σ(2u),  u = c (x + 0.044715 x³),  c = √(2/π)
                  gelu'(x) = σ + x σ (1 - σ) 2c (1 + 3·0.044715 x²),  σ = σ(2u) = 1 / (1 + e^(-2u))
    exact:        gelu(x) = x Φ(x),   gelu'(x) = Φ(x) + x φ(x),   Φ(x) = (1 + erf(x / √2)) / 2

The approximate form is tanh-GELU's value written with one exp instead of XLA's tanh, whose
float32 expansion is a rational polynomial with a division: on an H200 the ViT-B GELU passes
(256 x 208 x 3072) run at 0.242 / 0.282 ms (forward / backward) against 0.284 / 0.319 ms with
tanh, where a plain bias add takes 0.218 ms (docs/benchmarks.md, calls 26 and 28). It matches
``jax.nn.gelu(x, approximate=True)`` to float32 rounding. The exact form is torch's
``nn.GELU()`` formula, x (1 + erf(x/√2)) / 2 in float32, rounded once to x's dtype:
``jax.nn.gelu(x, approximate=False)`` forms -x/√2 in x's dtype (bfloat16 in the models) and
takes the float32 erfc of it (both of erfc's branches and an exp), which XLA ran as two passes
at about 40% of HBM bandwidth in ConvNeXt-T's step on an H200 (docs/benchmarks.md, call 82);
this form takes 2.62 ms less of that step (24.87 -> 22.25 ms, call 85).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

_C = math.sqrt(2.0 / math.pi)
_CUBIC = 0.044715


def _float32_at_least(x: jax.Array) -> jax.Array:
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _sigmoid_2u(x: jax.Array) -> jax.Array:
    """σ(2u) = (1 + tanh(u)) / 2 for u = c (x + 0.044715 x³), as 1 / (1 + e^(-2u))."""
    return 1.0 / (1.0 + jnp.exp(-2.0 * _C * (x + _CUBIC * x * x * x)))


def _normal_cdf(x: jax.Array) -> jax.Array:
    """Φ(x) = (1 + erf(x / √2)) / 2."""
    return 0.5 * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))


def _gelu_value(x: jax.Array, approximate: bool) -> jax.Array:
    xf = _float32_at_least(x)
    return (xf * (_sigmoid_2u(xf) if approximate else _normal_cdf(xf))).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def gelu(x: jax.Array, approximate: bool = True) -> jax.Array:
    """GELU of x (any shape and float dtype) with a backward pass that reads only x."""
    return _gelu_value(x, approximate)


def gelu_derivative(x: jax.Array, approximate: bool) -> jax.Array:
    """d gelu / dx, computed in float32 at least (see the module docstring)."""
    x = _float32_at_least(x)
    if approximate:
        s = _sigmoid_2u(x)
        return s + x * s * (1.0 - s) * (2.0 * _C) * (1.0 + 3.0 * _CUBIC * x * x)
    pdf = jnp.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return _normal_cdf(x) + x * pdf


def _gelu_fwd(x: jax.Array, approximate: bool) -> tuple[jax.Array, jax.Array]:
    return _gelu_value(x, approximate), x


def _gelu_bwd(approximate: bool, x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    return ((g * gelu_derivative(x, approximate)).astype(x.dtype),)


gelu.defvjp(_gelu_fwd, _gelu_bwd)
