"""ConvNeXt V1 (Liu et al. 2022) and V2 (Woo et al. 2023) in Flax linen, NHWC.

Block (input x of shape (N, H, W, C)):
    y = dwconv7x7(x)            depthwise: feature_group_count = C, padding 3, with bias
                                (computed with ``depthwise_padding``: same values)
    y = LayerNorm(y)            over channels, eps 1e-6
    y = gelu(y @ W1 + b1)       pwconv1: C -> 4C (exact erf GELU, as torch nn.GELU)
    y = GRN(y)                  V2 only: y + gamma * (y * Nx) + beta,
                                Nx = ||y||_HW / (mean_C ||y||_HW + 1e-6)
    y = y @ W2 + b2             pwconv2: 4C -> C
    y = layer_scale * y         V1 only (init 1e-6)
    out = x + drop_path(y)
Stem: 4x4 stride-4 conv + LayerNorm. Stages 1..3 start with LayerNorm + 2x2 stride-2 conv
(both non-overlapping patch convs, computed as matmuls: ``PatchConv``).
Head: global average pool -> LayerNorm -> Dense(num_classes) (``num_classes=0``: no Dense,
the normalised pooled features are returned).

Params are float32; ``dtype`` is the compute dtype (e.g. bfloat16). Logits come back float32.

Param tree (s = stage 0..3, b = block in stage, d = dims[s]; depths from ``CONVNEXT_DEPTHS``):
    stem_conv/kernel            (4, 4, 3, d0)        stem_conv/bias (d0,)
    stem_norm/{scale, bias}     (d0,)
    downsample{s}_norm/{scale, bias}                 s = 1..3, (d[s-1],)
    downsample{s}_conv/kernel   (2, 2, d[s-1], d[s]) downsample{s}_conv/bias (d[s],)
    stage{s}_block{b}/dwconv/kernel   (7, 7, 1, d)   .../dwconv/bias (d,)
    stage{s}_block{b}/norm/{scale, bias}             (d,)
    stage{s}_block{b}/pwconv1/kernel  (d, 4d)        .../pwconv1/bias (4d,)
    stage{s}_block{b}/grn/{gamma, beta}              (4d,)   V2 only
    stage{s}_block{b}/pwconv2/kernel  (4d, d)        .../pwconv2/bias (d,)
    stage{s}_block{b}/layer_scale                    (d,)    V1 only
    head_norm/{scale, bias}     (d3,)
    head/kernel                 (d3, num_classes)    head/bias (num_classes,)
Conv kernels are HWIO (4-D): stem_conv, downsample{s}_conv, dwconv. pwconv1/pwconv2 are the
official model's nn.Linear layers, so their kernels are 2-D (in, out). The FLoRA pattern
``flora_jax.CONV_TARGETS`` (``.*[Cc]onv[^/]*/kernel``) selects exactly all of these and never
the head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from experiments.models.activations import gelu
from experiments.models.drop_path import DropPath, check_rate
from experiments.models.patch_conv import PatchConv

#: variant -> (blocks per stage, channels per stage), as in the official repositories.
CONVNEXT_DEPTHS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "small": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
}

LAYER_NORM_EPS = 1e-6
DWCONV_SIZE = 7
GRN_EPS = 1e-6
LAYER_SCALE_INIT = 1e-6  # V1's layer scale starts here (the official default)
_KERNEL_INIT = nn.initializers.truncated_normal(stddev=0.02)


def depthwise_padding(spatial: Sequence[int], kernel: int) -> list[tuple[int, int]]:
    """Padding of the blocks' stride-1 "same" depthwise conv (kernel // 2 on each side), plus
    zeros at the high end of every spatial axis shorter than kernel + 1, so that the conv's
    output is at least kernel + 1 long there; the block cuts it back to the input's size (the
    extra rows and columns are dropped, so they get zero gradient: same values and gradients).

    Why: the kernel's gradient is a conv of the input with the output's gradient, and XLA's GPU
    conv rewriter reads one whose gradient map is no longer than the kernel as a forward conv
    (its heuristic in ``conv_rewriter.cc``), which cuDNN then runs with batch 1: ConvNeXt-T's
    last stage (7x7 maps, 7x7 kernel, batch 128) took 2.06 ms per block that way on an H200,
    against 0.08 ms for the backward-filter conv of the third stage's 14x14 maps
    (docs/benchmarks.md, call 77). One row and column more makes it a backward-filter conv:
    FLoRA's ConvNeXt-T step at batch 128 went from 30.97 to 25.09 ms (call 82).
    """
    half = kernel // 2
    return [(half, half + max(0, kernel + 1 - size)) for size in spatial]


def _norm_of_map(x: jax.Array) -> jax.Array:
    """||x||_2 over (H, W) of (N, H, W, C), (N, 1, 1, C); its gradient is 0 where the norm is 0
    (torch.norm's), where sqrt's would make it 0 * inf = NaN."""
    squares = jnp.sum(jnp.square(x), axis=(1, 2), keepdims=True)
    positive = squares > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squares, 1.0)), 0.0)


class GRN(nn.Module):
    """Global Response Normalisation (ConvNeXt V2) over (N, H, W, C); gamma, beta init 0."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.zeros, (channels,), jnp.float32)
        beta = self.param("beta", nn.initializers.zeros, (channels,), jnp.float32)
        x32 = x.astype(jnp.float32)
        gx = _norm_of_map(x32)
        nx = gx / (jnp.mean(gx, axis=-1, keepdims=True) + GRN_EPS)
        return (x32 + gamma * (x32 * nx) + beta).astype(self.dtype)


class ConvNeXtBlock(nn.Module):
    """One ConvNeXt block on (N, H, W, C); see the module docstring for the formula."""

    version: int
    drop_path: float = 0.0
    layer_scale_init: float = LAYER_SCALE_INIT
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        channels, (height, width) = x.shape[-1], x.shape[1:3]
        y = nn.Conv(
            channels,
            (DWCONV_SIZE, DWCONV_SIZE),
            padding=depthwise_padding((height, width), DWCONV_SIZE),
            feature_group_count=channels,
            kernel_init=_KERNEL_INIT,
            dtype=self.dtype,
            name="dwconv",
        )(x)[:, :height, :width]
        y = nn.LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype, name="norm")(y)
        y = nn.Dense(4 * channels, kernel_init=_KERNEL_INIT, dtype=self.dtype, name="pwconv1")(y)
        y = gelu(y, False)
        if self.version == 2:
            y = GRN(dtype=self.dtype, name="grn")(y)
        y = nn.Dense(channels, kernel_init=_KERNEL_INIT, dtype=self.dtype, name="pwconv2")(y)
        if self.version == 1:
            scale = self.param(
                "layer_scale",
                nn.initializers.constant(self.layer_scale_init),
                (channels,),
                jnp.float32,
            )
            y = y * scale.astype(self.dtype)
        return x + DropPath(self.drop_path)(y, deterministic=not train)


class ConvNeXt(nn.Module):
    """ConvNeXt classifier: (N, H, W, 3) normalised images -> (N, num_classes) float32 logits.

    ``version`` 1 has layer scale (from ``layer_scale_init`` > 0), 2 has GRN and no layer scale
    (``layer_scale_init`` left at its default). ``drop_path_rate`` (in [0, 1)) rises linearly from
    0 at the first block to this value at the last. H and W must be multiples of 32.
    """

    depths: tuple[int, ...]
    dims: tuple[int, ...]
    version: int = 1
    num_classes: int = 1000
    drop_path_rate: float = 0.0
    layer_scale_init: float = LAYER_SCALE_INIT
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool = False) -> jax.Array:
        self._check(images)
        x = images.astype(self.dtype)
        rates = np.linspace(0.0, self.drop_path_rate, sum(self.depths)).tolist()
        block_index = 0
        for stage, (depth, dim) in enumerate(zip(self.depths, self.dims, strict=True)):
            if stage == 0:
                x = self._conv(dim, 4, "stem_conv")(x)
                x = self._norm("stem_norm")(x)
            else:
                x = self._norm(f"downsample{stage}_norm")(x)
                x = self._conv(dim, 2, f"downsample{stage}_conv")(x)
            for block in range(depth):
                x = ConvNeXtBlock(
                    self.version,
                    drop_path=rates[block_index],
                    layer_scale_init=self.layer_scale_init,
                    dtype=self.dtype,
                    name=f"stage{stage}_block{block}",
                )(x, train=train)
                block_index += 1
        x = self._norm("head_norm")(jnp.mean(x, axis=(1, 2)))
        if self.num_classes:
            x = nn.Dense(self.num_classes, kernel_init=_KERNEL_INIT, dtype=self.dtype, name="head")(
                x
            )
        return x.astype(jnp.float32)

    def _conv(self, features: int, patch: int, name: str) -> PatchConv:
        return PatchConv(features, patch, kernel_init=_KERNEL_INIT, dtype=self.dtype, name=name)

    def _norm(self, name: str) -> nn.LayerNorm:
        return nn.LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype, name=name)

    def _check(self, images: jax.Array) -> None:
        if self.version not in (1, 2):
            raise ValueError(f"ConvNeXt version must be 1 or 2, got {self.version}")
        check_rate("drop_path_rate", self.drop_path_rate)
        if self.version == 2 and self.layer_scale_init != LAYER_SCALE_INIT:
            raise ValueError(
                f"ConvNeXt V2 has no layer scale: layer_scale_init={self.layer_scale_init} "
                "applies to version 1 only"
            )
        if self.layer_scale_init <= 0:
            raise ValueError(f"layer_scale_init must be > 0, got {self.layer_scale_init}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {self.num_classes}")
        if len(self.depths) != len(self.dims):
            raise ValueError(f"depths {self.depths} and dims {self.dims} differ in length")
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected (N, H, W, 3) images, got shape {images.shape}")
        stride = 4 * 2 ** (len(self.depths) - 1)
        if images.shape[1] % stride or images.shape[2] % stride:
            raise ValueError(
                f"image height and width must be multiples of {stride}, got {images.shape}"
            )


def convnext(
    variant: str,
    *,
    version: int = 1,
    num_classes: int = 1000,
    drop_path_rate: float = 0.0,
    dtype: Any = jnp.float32,
) -> ConvNeXt:
    """A named ConvNeXt: ``variant`` in CONVNEXT_DEPTHS (tiny, small, base, large)."""
    if variant not in CONVNEXT_DEPTHS:
        raise ValueError(
            f"unknown ConvNeXt variant {variant!r}; choose from {sorted(CONVNEXT_DEPTHS)}"
        )
    depths, dims = CONVNEXT_DEPTHS[variant]
    return ConvNeXt(
        depths=depths,
        dims=dims,
        version=version,
        num_classes=num_classes,
        drop_path_rate=drop_path_rate,
        dtype=dtype,
    )


def convnext_for_tests(
    *, version: int = 1, num_classes: int = 10, dtype: Any = jnp.float32
) -> ConvNeXt:
    """A tiny ConvNeXt (depths 1-1-2-1, 8-64 channels) with the real layout, for CPU tests."""
    return ConvNeXt(
        depths=(1, 1, 2, 1),
        dims=(8, 16, 32, 64),
        version=version,
        num_classes=num_classes,
        dtype=dtype,
    )
