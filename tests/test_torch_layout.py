"""The torch <-> Flax conv kernel layouts against a conv run in each framework's own layout."""

import chex
import jax
import numpy as np
import pytest
from jax import lax

from experiments.models.torch_layout import conv_kernel_from_torch, conv_kernel_to_torch


@pytest.mark.parametrize("shape", [(5, 3, 3, 2), (4, 1, 1, 1), (2, 6, 4, 3)])
def test_a_torch_kernel_convolves_the_same_in_flax_layout(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    weight = rng.standard_normal(shape).astype(np.float32)  # torch (out, in, kh, kw)
    images = rng.standard_normal((2, shape[1], 7, 8)).astype(np.float32)  # torch NCHW
    torch_style = lax.conv_general_dilated(
        images, weight, (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW")
    )
    kernel = conv_kernel_from_torch(weight)
    chex.assert_shape(kernel, (shape[2], shape[3], shape[1], shape[0]))
    flax_style = lax.conv_general_dilated(
        images.transpose(0, 2, 3, 1), kernel, (1, 1), "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )  # fmt: skip
    chex.assert_trees_all_close(flax_style, torch_style.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(conv_kernel_to_torch(kernel), weight)
    assert isinstance(conv_kernel_to_torch(jax.numpy.asarray(kernel)), jax.Array)
