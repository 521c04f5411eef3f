"""GELU whose gradient keeps only its input.

``jax.nn.gelu`` differentiated by autodiff saves an intermediate of the forward pass for the
backward one (the tanh of the approximate form), a second activation-sized tensor per MLP: for a
ViT-B at batch 256 that is 310 MB written and read again per block. This GELU's VJP keeps only
the input x (which the MLP's first matmul has produced anyway) and recomputes the derivative
from it, in float32:

    approximate:  gelu(x) = x/2 (1 + tanh(c (x + 0.044715 x³))),  c = √(2/π)
                  gelu'(x) = (1 + t)/2 + x/2 (1 - t²) c (1 + 3·0.044715 x²),  t = tanh(...)
    exact:        gelu(x) = x Φ(x),   gelu'(x) = Φ(x) + x φ(x)

The forward values are ``jax.nn.gelu``'s. On an H200 the GELU passes of a ViT-B step run at
about half the HBM bandwidth whatever the derivative's form: the sigmoid form or bf16 arithmetic
measured no faster (docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

_C = math.sqrt(2.0 / math.pi)
_CUBIC = 0.044715


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def gelu(x: jax.Array, approximate: bool = True) -> jax.Array:
    """``jax.nn.gelu(x, approximate)`` with a backward pass that reads only x."""
    return jax.nn.gelu(x, approximate=approximate)


def gelu_derivative(x: jax.Array, approximate: bool) -> jax.Array:
    """d gelu / dx, computed in float32 at least (see the module docstring)."""
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    if approximate:
        t = jnp.tanh(_C * (x + _CUBIC * x**3))
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _C * (1.0 + 3.0 * _CUBIC * x * x)
    cdf = 0.5 * (1.0 + jax.lax.erf(x / math.sqrt(2.0)))
    pdf = jnp.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return cdf + x * pdf


def _gelu_fwd(x: jax.Array, approximate: bool) -> tuple[jax.Array, jax.Array]:
    return jax.nn.gelu(x, approximate=approximate), x


def _gelu_bwd(approximate: bool, x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    return ((g * gelu_derivative(x, approximate)).astype(x.dtype),)


gelu.defvjp(_gelu_fwd, _gelu_bwd)
