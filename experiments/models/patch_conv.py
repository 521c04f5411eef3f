"""A non-overlapping patch convolution (kernel p x p, stride p, "VALID") as one matmul.

(B, H, W, C) -> (B, H//p, W//p, D): the rows and columns past the last whole patch are dropped,
as a "VALID" strided conv drops them; each patch (p, p, C) is flattened and multiplied by the
kernel viewed as (p·p·C, D), then the bias is added:

    y[b, i, j] = flatten(x[b, p·i : p·i + p, p·j : p·j + p, :]) @ kernel.reshape(p·p·C, D) + bias

Params as ``nn.Conv``'s (kernel (p, p, C, D) HWIO, bias (D,), zeros), so checkpoints and param
trees do not change. On an H200 cuDNN ran ViT-B's stride-16 patch conv at ~35 TFLOP/s (1.7 ms of
a batch-256 step, docs/benchmarks.md, call 4) where the matmul runs as an ordinary GEMM, and a
conv's gradient is a cuDNN backward-filter conv whose dozens of candidate engines XLA autotunes
(ConvNeXt-T's 4x4 stem: 67 candidates, calls 84-86). ConvNeXt-T's stem and downsampling
convs as matmuls: FLoRA's step at batch 128 0.33 ms faster (21.93 against 22.26 ms, call 90).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from einops import rearrange

from experiments.models.dense import BiasGrad, Initializer, add_bias


class PatchConv(nn.Module):
    """The stride-``patch`` ``patch`` x ``patch`` "VALID" convolution as one matmul."""

    features: int
    patch: int
    kernel_init: Initializer = nn.initializers.lecun_normal()
    dtype: Any = None
    param_dtype: Any = jnp.float32
    bias_grad: BiasGrad = "reduce"

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        _, height, width, channels = images.shape
        p = self.patch
        shape = (p, p, channels, self.features)
        kernel = self.param("kernel", self.kernel_init, shape, self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(images, kernel, bias, dtype=self.dtype)
        x = x[:, : height // p * p, : width // p * p]
        patches = rearrange(x, "b (gh p) (gw q) c -> b gh gw (p q c)", p=p, q=p)
        y = patches @ rearrange(kernel, "p q c d -> (p q c) d")
        return add_bias(y, bias, self.bias_grad)
