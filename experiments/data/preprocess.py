"""Per-image preprocessing as the published VTAB-1k numbers did it.

Resizing is PIL bicubic on uint8 images to size x size, the aspect ratio not kept (what
torchvision's ``Resize((224, 224), interpolation=3)`` does on PIL images), done once on the
host. Normalisation maps uint8 x to float32

    imagenet: (x / 255 - mean) / std, mean = (0.485, 0.456, 0.406), std = (0.229, 0.224, 0.225)
    minus1_1: x / 127.5 - 1   (the range of the ViT i21k checkpoints)

and works on numpy and jax arrays alike (it only uses array methods and operators).
"""

from __future__ import annotations

from typing import Literal, overload

import jax
import numpy as np
from PIL import Image

Normalization = Literal["imagenet", "minus1_1"]

#: normalisation name -> (mean, std) applied to x / 255, per RGB channel.
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "minus1_1": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) uint8 -> (H, W, 3) uint8; grey is repeated 3 times."""
    if image.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"expected an (H, W), (H, W, 1) or (H, W, 3) image, got {image.shape}")
    if image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    return image


def resize_bicubic(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8 with PIL bicubic; unchanged if already that size."""
    if image.shape[:2] == (size, size):
        return image
    resized = Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(resized)


def check_normalization(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"unknown normalization {normalization!r}; expected one of {sorted(NORMALIZATIONS)}"
        )


@overload
def normalize(images: np.ndarray, normalization: Normalization) -> np.ndarray: ...
@overload
def normalize(images: jax.Array, normalization: Normalization) -> jax.Array: ...
def normalize(
    images: np.ndarray | jax.Array, normalization: Normalization
) -> np.ndarray | jax.Array:
    """uint8 images (..., 3), numpy or jax -> float32 normalised as the module docstring says."""
    check_normalization(normalization)
    if images.dtype != np.uint8:
        raise ValueError(f"normalize expects uint8 images, got {images.dtype}")
    mean, std = NORMALIZATIONS[normalization]
    scale = np.asarray(std, np.float32) * np.float32(255.0)
    shift = np.asarray(mean, np.float32) / np.asarray(std, np.float32)
    return images.astype(np.float32) / scale - shift
