"""The benchmarked backbones, built with the project's own loaders, and the attention choice.

ViT rows use ``experiments.backbones.load_backbone`` (random weights, bf16 compute, f32
params). ConvNeXt rows wrap ``experiments.models.convnext`` in the same ``Backbone`` value
(random init, ImageNet input scaling, FLoRA's convolution targets).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bench.arguments import ATTENTIONS
from bench.sizes import BenchSize
from experiments.backbones import Backbone, BackboneConfig, load_backbone
from experiments.data.preprocess import normalize
from experiments.models import convnext
from experiments.models.attention import masked_dot_product_attention, pad_tokens, padded_length
from experiments.models.vit import vit
from flora_jax import CONV_TARGETS
from peft_core.paths import Params
from peft_core.targets import DENSE_TARGETS, SCANNED

#: ViT-B/16 at 224: 197 tokens, 12 heads of 64.
_ATTENTION_CHECK_SHAPE = (4, 197, 12, 64)
#: bf16 operands land between 1e-3 and 1e-2 relative error (METHOD.md).
_ATTENTION_TOLERANCE = 2e-2


def choose_attention(requested: str) -> tuple[str | None, str]:
    """(ViT attention implementation, note). "auto": cuDNN on a GPU if it runs and matches.

    The cuDNN path (tokens padded as the ViT pads them, 197 -> 198 and -> 200, padded keys masked)
    is checked against XLA's attention on fresh random bf16 inputs; on an error or a mismatch
    "auto" uses "xla" and the note says why, and "cudnn" (on any backend) raises. "none" is the
    plain einsum attention; "xla" forces XLA's kernel.
    """
    if requested not in ATTENTIONS:
        raise ValueError(f"attention must be auto, cudnn, xla or none, got {requested!r}")
    if requested == "none":
        return None, "attention: einsum"
    if requested == "xla" or (requested == "auto" and jax.default_backend() != "gpu"):
        return "xla", "attention: XLA"
    length = _ATTENTION_CHECK_SHAPE[1]
    # the lengths the ViT's cuDNN default pads to: shortest even, and training 64 per device
    lengths = sorted({padded_length(length, "cudnn", None, b) for b in (None, 64)})
    try:
        error = max(_cudnn_attention_error(padded) for padded in lengths)
    except Exception as e:  # noqa: BLE001 - any failure of the fused kernel means: fall back
        failure = f"cuDNN failed: {type(e).__name__}: {str(e)[:200]}"
    else:
        if error <= _ATTENTION_TOLERANCE:
            padded = "/".join(map(str, lengths))
            checked = f"checked padded {length}->{padded}: rel. err. {error:.1e}"
            return "cudnn", f"attention: cuDNN ({checked})"
        failure = f"cuDNN relative error {error:.2e} vs XLA"
    if requested == "cudnn":
        raise RuntimeError(f"--attention cudnn: {failure}; --attention auto falls back to XLA")
    return "xla", f"attention: XLA ({failure})"


def _cudnn_attention_error(padded: int) -> float:
    """‖cudnn - xla‖ / ‖xla‖ of attention on random bf16 q, k, v, padded to ``padded`` tokens for
    cuDNN as the ViT pads them (float32 norms)."""
    keys = jax.random.split(jax.random.key(int(np.random.default_rng().integers(2**31))), 3)
    q, k, v = (jax.random.normal(key, _ATTENTION_CHECK_SHAPE, jnp.bfloat16) for key in keys)
    length = q.shape[1]
    fused = masked_dot_product_attention(
        *(pad_tokens(t, padded) for t in (q, k, v)), num_keys=length, implementation="cudnn"
    )[:, :length]
    plain = masked_dot_product_attention(q, k, v, implementation="xla")
    diff = jnp.linalg.norm((fused - plain).astype(jnp.float32))
    return float(diff / jnp.linalg.norm(plain.astype(jnp.float32)))


def vit_backbone(
    size: BenchSize, *, attention: str | None, scan: bool = False, remat_policy: str | None = None
) -> Backbone:
    """The size's ViT with random weights, bf16 compute, a fresh ``num_classes`` head.

    ``size.vit == "test"``: a one-block ViT-Ti/16 (CPU smoke runs; compiles in about a second),
    else a named backbone of ``experiments.backbones``. ``scan``: the blocks as one ``nn.scan``
    (params stacked along a leading axis, so adapters compute every block's update at once).
    ``remat_policy``: rematerialise each block, keeping what the policy names
    (``experiments.models.vit.REMAT_POLICIES``).
    """
    remat = remat_policy is not None
    if size.vit != "test":
        config = BackboneConfig(
            name=size.vit, image_size=size.image_size, dtype="bfloat16", attention=attention,
            scan=scan, remat=remat, remat_policy=remat_policy,
        )  # fmt: skip
        return load_backbone(config, num_classes=size.num_classes)
    model = vit(
        "Ti", patch=16, depth=1, num_classes=size.num_classes, dtype=jnp.bfloat16,
        attn_implementation=attention, scan=scan, remat=remat, remat_policy=remat_policy,
    )  # fmt: skip
    params = _init(model, size.image_size, seed=0)
    return Backbone(
        model, params, lambda images: normalize(images, "minus1_1"), DENSE_TARGETS,
        SCANNED if scan else None, jnp.bfloat16,
    )  # fmt: skip


def convnext_backbone(size: BenchSize, *, seed: int = 0) -> Backbone:
    """ConvNeXt (a named variant, or for "test" two one-block stages of 8 and 16 channels:
    stem, block, downsample, block) with random init and bf16 compute."""
    if size.convnext == "test":
        model = convnext.ConvNeXt(
            depths=(1, 1), dims=(8, 16), num_classes=size.num_classes, dtype=jnp.bfloat16
        )
    else:
        model = convnext.convnext(size.convnext, num_classes=size.num_classes, dtype=jnp.bfloat16)
    params = _init(model, size.image_size, seed=seed)
    return Backbone(
        model, params, lambda images: normalize(images, "imagenet"), CONV_TARGETS, None,
        jnp.bfloat16,
    )  # fmt: skip


def _init(model: nn.Module, image_size: int, *, seed: int) -> Params:
    dummy = np.zeros((1, image_size, image_size, 3), np.float32)
    params: Params = jax.jit(model.init)(jax.random.key(seed), dummy)["params"]
    return params
