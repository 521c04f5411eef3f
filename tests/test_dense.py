"""experiments.models.dense: the bias add's gradients (both forms) against numpy, the Dense layer
against flax's Dense / DenseGeneral (params, outputs, gradients), and its errors."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.models.dense import BiasGrad, Dense, add_bias


@pytest.mark.parametrize(
    "y_shape, bias_shape",
    [((4, 5, 6), (6,)), ((3, 4, 2, 3), (2, 3)), ((6,), (6,)), ((2, 7, 1), (7, 1))],
)
@pytest.mark.parametrize("dtype, tol", [(jnp.float32, 1e-6), (jnp.bfloat16, 1e-2)])
@pytest.mark.parametrize("bias_grad", ["gemv", "reduce"])
def test_add_bias_value_and_gradients_match_numpy(
    y_shape: tuple[int, ...],
    bias_shape: tuple[int, ...],
    dtype: jnp.dtype,
    tol: float,
    bias_grad: BiasGrad,
) -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=y_shape).astype(np.float32)
    bias = rng.normal(size=bias_shape).astype(np.float32)
    weights = rng.normal(size=y_shape).astype(np.float32)  # loss = sum(weights * out)

    def loss(y: jax.Array, bias: jax.Array) -> jax.Array:
        out = add_bias(y.astype(dtype), bias.astype(dtype), bias_grad)
        return jnp.sum(out.astype(jnp.float32) * weights)

    out = add_bias(jnp.asarray(y, dtype), jnp.asarray(bias, dtype), bias_grad)
    chex.assert_shape(out, y_shape)
    assert out.dtype == dtype
    np.testing.assert_allclose(np.asarray(out, np.float32), y + bias, rtol=tol, atol=tol)
    dy, dbias = jax.grad(loss, argnums=(0, 1))(jnp.asarray(y), jnp.asarray(bias))
    leading = tuple(range(len(y_shape) - len(bias_shape)))
    np.testing.assert_allclose(dy, weights, rtol=tol, atol=tol)
    expected = weights.sum(axis=leading)
    np.testing.assert_allclose(dbias, expected, rtol=tol, atol=tol * np.abs(expected).max())


@pytest.mark.parametrize("bias_grad", ["gemv", "reduce"])
def test_add_bias_gradient_keeps_float64(bias_grad: BiasGrad) -> None:
    with jax.enable_x64(True):
        weights = np.random.default_rng(1).normal(size=(300, 7))
        bias = jnp.zeros(7, jnp.float64)
        dbias = jax.grad(lambda b: jnp.sum(add_bias(jnp.zeros((300, 7)), b, bias_grad) * weights))(
            bias
        )
        assert dbias.dtype == jnp.float64
        np.testing.assert_allclose(dbias, weights.sum(0), rtol=1e-13, atol=1e-13)


def test_add_bias_gradient_under_vmap_matches_numpy() -> None:
    """Per-config biases (K, F) on per-config shares (K, B, T, F), as the GLoRA supernet's vmap."""
    rng = np.random.default_rng(1)
    y = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    bias = rng.normal(size=(3, 6)).astype(np.float32)
    weights = rng.normal(size=y.shape).astype(np.float32)
    per_config = jax.vmap(lambda y, b: add_bias(y, b, "gemv"))
    grad = jax.grad(lambda b: jnp.sum(per_config(jnp.asarray(y), b) * weights))
    np.testing.assert_allclose(grad(jnp.asarray(bias)), weights.sum(axis=(1, 2)), rtol=1e-5)


def test_add_bias_refuses_mismatched_dtypes_and_shapes() -> None:
    y = jnp.zeros((2, 3), jnp.bfloat16)
    with pytest.raises(ValueError, match="one dtype"):
        add_bias(y, jnp.zeros((3,), jnp.float32), "gemv")
    with pytest.raises(ValueError, match="trailing axes"):
        add_bias(y, jnp.zeros((2,), jnp.bfloat16), "gemv")
    with pytest.raises(ValueError, match="bias_grad must be one of"):
        add_bias(y, jnp.zeros((3,), jnp.bfloat16), "sum")  # type: ignore[arg-type]


DENSE_CASES = [
    # (ours, flax's, input shape)
    (dict(features=5), nn.Dense(5), (2, 3, 4)),
    (
        dict(features=(2, 3), kernel_init=nn.initializers.xavier_uniform()),
        nn.DenseGeneral((2, 3), kernel_init=nn.initializers.xavier_uniform()),
        (2, 3, 4),
    ),
    (
        dict(features=4, axis=(-2, -1), bias_init=nn.initializers.normal(0.5)),
        nn.DenseGeneral(4, axis=(-2, -1), bias_init=nn.initializers.normal(0.5)),
        (2, 3, 2, 3),
    ),
]


@pytest.mark.parametrize("ours, theirs, x_shape", DENSE_CASES)
@pytest.mark.parametrize("bias_grad", ["gemv", "reduce"])
def test_dense_equals_flax_params_outputs_and_gradients(
    ours: dict, theirs: nn.Module, x_shape: tuple[int, ...], bias_grad: BiasGrad
) -> None:
    layer = Dense(**ours, bias_grad=bias_grad)
    x = jax.random.normal(jax.random.key(0), x_shape)
    params = layer.init(jax.random.key(1), x)
    chex.assert_trees_all_equal(params, theirs.init(jax.random.key(1), x))
    params = jax.tree.map(lambda p: p + 0.3, params)  # a non-zero bias
    chex.assert_trees_all_close(layer.apply(params, x), theirs.apply(params, x), rtol=1e-6)

    def loss(module: nn.Module):  # noqa: ANN202
        return lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))

    ours_grads = jax.grad(loss(layer), argnums=(0, 1))(params, x)
    flax_grads = jax.grad(loss(theirs), argnums=(0, 1))(params, x)
    chex.assert_trees_all_close(ours_grads, flax_grads, rtol=1e-5, atol=1e-6)


def test_dense_computes_in_its_dtype_with_float32_params() -> None:
    layer = Dense(3, dtype=jnp.bfloat16, bias_grad="gemv")
    x = jnp.ones((2, 4))
    params = layer.init(jax.random.key(0), x)
    assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    assert layer.apply(params, x).dtype == jnp.bfloat16
    grads = jax.grad(lambda p: jnp.sum(layer.apply(p, x).astype(jnp.float32)))(params)
    np.testing.assert_allclose(grads["params"]["bias"], np.full(3, 2.0))


def test_dense_refuses_leading_contracting_axes() -> None:
    with pytest.raises(ValueError, match="trailing axes"):
        Dense(3, axis=0).init(jax.random.key(0), jnp.ones((2, 4)))


def test_skip_bias_keeps_the_param_and_leaves_it_out() -> None:
    layer = Dense((2, 3), skip_bias=True)
    x = jax.random.normal(jax.random.key(0), (5, 4))
    params = layer.init(jax.random.key(1), x)
    chex.assert_shape((params["params"]["kernel"], params["params"]["bias"]), [(4, 2, 3), (2, 3)])
    params = jax.tree.map(lambda p: p + 0.7, params)
    want = np.einsum("nd,dhk->nhk", np.asarray(x), np.asarray(params["params"]["kernel"]))
    chex.assert_trees_all_close(layer.apply(params, x), want, rtol=1e-5, atol=1e-6)
    grads = jax.grad(lambda p: jnp.sum(jnp.sin(layer.apply(p, x))))(params)
    np.testing.assert_array_equal(grads["params"]["bias"], np.zeros((2, 3)))


@pytest.mark.parametrize("bias_grad", ["gemv", "reduce"])
def test_input_offset_is_added_to_the_input(bias_grad: BiasGrad) -> None:
    """Dense(x, input_offset=c) = (x + c) · kernel + bias, values and gradients (c as well)."""
    layer = Dense(4, axis=(-2, -1), bias_grad=bias_grad)
    x = jax.random.normal(jax.random.key(0), (5, 2, 3))
    c = jax.random.normal(jax.random.key(1), (2, 3))
    params = jax.tree.map(lambda p: p + 0.3, layer.init(jax.random.key(2), x))

    def loss(p, x, c, offset: bool):  # noqa: ANN001, ANN202
        y = layer.apply(p, x, input_offset=c) if offset else layer.apply(p, x + c)
        return jnp.sum(jnp.sin(y))

    got = jax.value_and_grad(loss, argnums=(0, 1, 2))(params, x, c, True)
    want = jax.value_and_grad(loss, argnums=(0, 1, 2))(params, x, c, False)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="is not the input"):
        layer.apply(params, x, input_offset=c[:1])
    with pytest.raises(ValueError, match="only where it adds its bias"):
        unbiased = {"params": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(4)}}
        Dense(4, skip_bias=True).apply(unbiased, x[:, 0], input_offset=c[0])


def test_input_offset_keeps_float64() -> None:
    """A float64 layer folds c · kernel into its bias in float64, not float32: (x + c) · kernel
    + bias to 1e-12."""
    with jax.enable_x64(True):
        layer = Dense(4, dtype=jnp.float64, param_dtype=jnp.float64)
        x = jax.random.normal(jax.random.key(0), (5, 3), jnp.float64)
        c = jax.random.normal(jax.random.key(1), (3,), jnp.float64)
        params = jax.tree.map(lambda p: p + 0.3, layer.init(jax.random.key(2), x))
        got = layer.apply(params, x, input_offset=c)
        kernel, bias = (np.asarray(params["params"][k]) for k in ("kernel", "bias"))
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(
            got, (np.asarray(x) + np.asarray(c)) @ kernel + bias, rtol=1e-12, atol=1e-12
        )
