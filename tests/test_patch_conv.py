"""PatchConv: the stride-p "VALID" patch convolution as a matmul, against XLA's convolution."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.models.patch_conv import PatchConv

RNG = jax.random.key(0)
DIMS = ("NHWC", "HWIO", "NHWC")


def conv_reference(x, kernel, bias, patch):
    return (
        jax.lax.conv_general_dilated(x, kernel, (patch, patch), "VALID", dimension_numbers=DIMS)
        + bias
    )


@pytest.mark.parametrize(
    "patch, height, width, channels",
    [
        (16, 32, 48, 3),
        (4, 8, 12, 3),
        (2, 6, 4, 5),
        (4, 10, 7, 3),
    ],  # the last drops a row and 3 cols
)
def test_values_and_gradients_equal_strided_convolution(patch, height, width, channels):
    x = jnp.asarray(
        np.random.default_rng(patch).normal(size=(2, height, width, channels)), jnp.float32
    )
    layer = PatchConv(features=6, patch=patch)
    params = layer.init(RNG, x)["params"]
    params = {**params, "bias": jnp.linspace(-1.0, 1.0, 6)}
    got = layer.apply({"params": params}, x)
    chex.assert_shape(got, (2, height // patch, width // patch, 6))
    chex.assert_trees_all_close(
        got, conv_reference(x, params["kernel"], params["bias"], patch), atol=1e-5
    )

    def loss(fn):
        return lambda p, x: jnp.sum(jnp.sin(fn(p, x)))

    ours = jax.grad(loss(lambda p, x: layer.apply({"params": p}, x)), argnums=(0, 1))(params, x)
    ref = jax.grad(
        loss(lambda p, x: conv_reference(x, p["kernel"], p["bias"], patch)), argnums=(0, 1)
    )(params, x)
    chex.assert_trees_all_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_params_as_flax_conv_and_compute_dtype():
    x = jnp.ones((1, 8, 8, 3), jnp.bfloat16)
    layer = PatchConv(
        features=4, patch=4, kernel_init=jax.nn.initializers.constant(0.5), dtype=jnp.bfloat16
    )
    params = layer.init(RNG, x)["params"]
    conv = nn.Conv(4, (4, 4), strides=4, padding="VALID")
    conv_params = jax.eval_shape(conv.init, RNG, x)["params"]
    chex.assert_trees_all_equal_shapes(params, conv_params)
    assert params["kernel"].dtype == jnp.float32 and params["bias"].dtype == jnp.float32
    y = layer.apply({"params": params}, x)
    assert y.dtype == jnp.bfloat16
    chex.assert_trees_all_close(y, jnp.full((1, 2, 2, 4), 0.5 * 48, jnp.bfloat16))
