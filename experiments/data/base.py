"""The values every data source produces: example sources and materialised split arrays."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageOps

#: One decoded example: an image (H, W), (H, W, 1) or (H, W, 3) uint8 and its integer label.
Example = tuple[np.ndarray, int]


class DataNotFoundError(FileNotFoundError):
    """A dataset is not on this machine; the message says what to fetch and where to put it."""


class ExampleSource(Protocol):
    """Random access to the decoded examples of one split, in split order."""

    def __len__(self) -> int: ...

    def read(self, indices: Sequence[int]) -> list[Example]:
        """The examples at ``indices`` (any order, repeats allowed), decoded."""
        ...


@dataclasses.dataclass(frozen=True)
class ArraySource:
    """An ExampleSource over in-memory arrays: images (N, H, W[, C]) uint8, labels (N,) int."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8, got {self.images.dtype}")
        if self.images.ndim not in (3, 4):
            raise ValueError(f"images must be (N, H, W) or (N, H, W, C), got {self.images.shape}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels must be ({self.images.shape[0]},) to match images "
                f"{self.images.shape}, got {self.labels.shape}"
            )
        if not np.issubdtype(self.labels.dtype, np.integer):
            raise ValueError(f"labels must be integers, got {self.labels.dtype}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def read(self, indices: Sequence[int]) -> list[Example]:
        return [(self.images[i], int(self.labels[i])) for i in indices]


@dataclasses.dataclass(frozen=True)
class ImageFileSource:
    """An ExampleSource over image files (any format PIL reads), decoded as RGB on read."""

    paths: tuple[Path, ...]
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.labels.shape != (len(self.paths),):
            raise ValueError(f"{len(self.paths)} paths but labels of shape {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, indices: Sequence[int]) -> list[Example]:
        return [(_read_rgb(self.paths[i]), int(self.labels[i])) for i in indices]


#: PIL modes of more than 8 bits per channel: ``convert("RGB")`` clips them (a 16-bit scan
#: turns white, a float image in [0, 1] black) instead of rescaling.
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8, upright by its EXIF orientation (as photo viewers show it); ValueError
    naming the file it cannot decode or would clip."""
    try:
        with Image.open(path) as image:
            if image.mode in _WIDE_MODES:
                raise ValueError(
                    f"{path} is a {image.mode} image (16-bit or float): convert it to 8 bits per "
                    "channel, as converting to RGB here would clip it"
                )
            upright = ImageOps.exif_transpose(image)  # a phone photo's orientation tag
            return np.asarray(upright.convert("RGB"))
    except OSError as e:  # PIL's UnidentifiedImageError, a truncated file, an unreadable one
        raise ValueError(f"cannot decode image {path}: {e} (fix or remove the file)") from e


@dataclasses.dataclass(frozen=True)
class SplitArrays:
    """One split of one task, ready for the input pipeline.

    images: (N, H, W, 3) uint8 in [0, 255], or float32 when a normalisation was applied.
    labels: (N,) int32 in [0, num_classes).
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str
    split: str

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(
                f"{self.name}/{self.split}: images must be (N, H, W, 3), got {self.images.shape}"
            )
        if self.labels.shape != (self.images.shape[0],) or self.labels.dtype != np.int32:
            raise ValueError(
                f"{self.name}/{self.split}: labels must be int32 "
                f"({self.images.shape[0]},), got {self.labels.dtype} "
                f"{self.labels.shape}"
            )
        check_labels(self.labels, self.num_classes, where=f"{self.name}/{self.split}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def check_labels(labels: np.ndarray, num_classes: int, *, where: str) -> None:
    """Raise ValueError naming ``where`` unless every label is in [0, num_classes)."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{where}: labels must lie in [0, {num_classes}), got range "
            f"[{labels.min()}, {labels.max()}]"
        )
