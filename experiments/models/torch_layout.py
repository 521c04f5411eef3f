"""PyTorch's convolution kernel layout and Flax's, named by einops patterns.

A torch ``nn.Conv2d`` weight is (out, in, kh, kw) ("OIHW"); a Flax ``nn.Conv`` kernel is
(kh, kw, in, out) ("HWIO"). Both functions transpose numpy or JAX arrays (no arithmetic on the
values).
"""

from __future__ import annotations

from typing import TypeVar

from einops import rearrange

Array = TypeVar("Array")


def conv_kernel_from_torch(weight: Array) -> Array:
    """(out, in, kh, kw) -> (kh, kw, in, out)."""
    return rearrange(weight, "o i h w -> h w i o")


def conv_kernel_to_torch(kernel: Array) -> Array:
    """(kh, kw, in, out) -> (out, in, kh, kw)."""
    return rearrange(kernel, "h w i o -> o i h w")
