"""The GELU with an input-only VJP: values and gradients against numpy references (float64)."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.models.activations import gelu

C = math.sqrt(2 / math.pi)


def np_gelu(x: np.ndarray, approximate: bool) -> np.ndarray:
    if approximate:
        return 0.5 * x * (1 + np.tanh(C * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def np_gelu_grad(x: np.ndarray, approximate: bool, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of the float64 reference."""
    return (np_gelu(x + eps, approximate) - np_gelu(x - eps, approximate)) / (2 * eps)


@pytest.mark.parametrize("approximate", [True, False])
@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_gelu_values_and_gradients(approximate, dtype, tol):
    x = np.random.default_rng(0).normal(0.0, 2.0, size=(4, 257)).astype(np.float32)
    x[0, :5] = [-8.0, -3.0, 0.0, 3.0, 8.0]
    xd = jnp.asarray(x, dtype)
    x64 = np.asarray(xd.astype(jnp.float32), np.float64)
    y = gelu(xd, approximate)
    assert y.dtype == dtype
    chex.assert_trees_all_close(
        np.asarray(y, np.float64), np_gelu(x64, approximate), atol=tol, rtol=tol
    )
    g = np.random.default_rng(1).normal(size=x.shape)
    grad = jax.grad(lambda v: jnp.sum(gelu(v, approximate).astype(jnp.float32) * g))(xd)
    assert grad.dtype == dtype
    chex.assert_trees_all_close(
        np.asarray(grad, np.float64), g * np_gelu_grad(x64, approximate), atol=tol, rtol=tol
    )


@pytest.mark.parametrize("approximate", [True, False])
def test_gelu_forward_is_jax_gelu(approximate):
    x = jax.random.normal(jax.random.key(2), (64,), jnp.bfloat16) * 3
    np.testing.assert_array_equal(gelu(x, approximate), jax.nn.gelu(x, approximate=approximate))


def test_gelu_backward_keeps_only_the_input():
    """The saved residuals of the linearised GELU: the input alone (no tanh intermediate)."""
    x = jnp.ones((8, 16), jnp.float32)
    _, vjp = jax.vjp(lambda v: gelu(v, True), x)
    saved = [leaf for leaf in jax.tree.leaves(vjp) if hasattr(leaf, "shape")]
    assert len(saved) == 1 and saved[0].shape == x.shape
    _, autodiff_vjp = jax.vjp(lambda v: jax.nn.gelu(v, approximate=True), x)
    assert len([leaf for leaf in jax.tree.leaves(autodiff_vjp) if hasattr(leaf, "shape")]) > 1
