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


@pytest.mark.parametrize(
    "dtype,rtol,atol", [(jnp.float32, 2e-7, 2e-6), (jnp.bfloat16, 2**-8, 1e-6)]
)
def test_exact_gelu_forward_is_within_one_rounding(dtype, rtol, atol):
    """x Φ(x) through erf in float32 (torch's nn.GELU formula), rounded once to x's dtype: every
    bfloat16 value within one bf16 rounding of the float64 value of its input (jax.nn.gelu,
    which forms -x/√2 in bfloat16, is off by up to 4% on about an eighth of these); float32
    within 2e-6 (erf's cancellation near Φ = 0 costs relative, not absolute, accuracy)."""
    x = np.linspace(-12.0, 12.0, 48001, dtype=np.float32)
    xd = jnp.asarray(x).astype(dtype)
    y = gelu(xd, False)
    assert y.dtype == dtype
    x64 = np.asarray(xd.astype(jnp.float32), np.float64)
    error = np.abs(np.asarray(y.astype(jnp.float32), np.float64) - np_gelu(x64, False))
    assert np.all(error <= atol + rtol * np.abs(np_gelu(x64, False))), error.max()


@pytest.mark.parametrize("dtype,rtol", [(jnp.float32, 2e-6), (jnp.bfloat16, 2**-8)])
def test_approximate_gelu_forward_matches_jax_tanh_gelu(dtype, rtol):
    """The exp form is tanh-GELU's value: to float32 rounding, and to one bf16 rounding of it."""
    x = jax.random.normal(jax.random.key(2), (4096,), jnp.float32) * 4
    reference = jax.nn.gelu(x, approximate=True)
    y = gelu(x.astype(dtype), True)
    assert y.dtype == dtype
    exact_input = x.astype(dtype).astype(jnp.float32)
    chex.assert_trees_all_close(
        y.astype(jnp.float32), jax.nn.gelu(exact_input, approximate=True), rtol=rtol, atol=1e-6
    )
    if dtype == jnp.float32:
        chex.assert_trees_all_close(y, reference, rtol=rtol, atol=1e-6)


def np_tanh_gelu_derivative(x: np.ndarray) -> np.ndarray:
    t = np.tanh(C * (x + 0.044715 * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * C * (1 + 3 * 0.044715 * x * x)


def test_approximate_gelu_is_finite_and_right_for_large_inputs():
    """|x| large enough that e^(-2u) overflows or underflows float32: value x or 0, slope 1 or 0."""
    x = np.array([-1e4, -100.0, -30.0, -12.0, -10.0, 10.0, 12.0, 30.0, 100.0, 1e4], np.float32)
    y, vjp = jax.vjp(lambda v: gelu(v, True), jnp.asarray(x))
    (slope,) = vjp(jnp.ones_like(y))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(slope))
    x64 = x.astype(np.float64)
    chex.assert_trees_all_close(np.asarray(y, np.float64), np_gelu(x64, True), rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_close(
        np.asarray(slope, np.float64), np_tanh_gelu_derivative(x64), rtol=1e-6, atol=1e-6
    )


def test_gelu_backward_keeps_only_the_input():
    """The saved residuals of the linearised GELU: the input alone (no tanh intermediate)."""
    x = jnp.ones((8, 16), jnp.float32)
    _, vjp = jax.vjp(lambda v: gelu(v, True), x)
    saved = [leaf for leaf in jax.tree.leaves(vjp) if hasattr(leaf, "shape")]
    assert len(saved) == 1 and saved[0].shape == x.shape
    _, autodiff_vjp = jax.vjp(lambda v: jax.nn.gelu(v, approximate=True), x)
    assert len([leaf for leaf in jax.tree.leaves(autodiff_vjp) if hasattr(leaf, "shape")]) > 1
