"""Decode a whole split once into arrays, in parallel threads, optionally cached on disk.

Each example goes through ``to_rgb`` then, when ``image_size`` is set, ``resize_bicubic``.
With a cache directory the images are written straight into ``<digest>.images.npy`` (so a
70k-image test split never has to fit in memory) and later loads memory-map that file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from experiments.data.base import ExampleSource
from experiments.data.preprocess import resize_bicubic, to_rgb
from peft_core.atomic_files import replacing, write_text

_CHUNK = 128


def default_num_workers() -> int:
    return min(16, os.cpu_count() or 1)


def materialize(
    source: ExampleSource,
    *,
    image_size: int | None,
    num_workers: int | None = None,
    out_path: Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """All examples of ``source`` -> images (N, S, S, 3) uint8 and labels (N,) int32.

    Without ``image_size`` every image must already have the same (H, W). With ``out_path``
    the images array is a .npy file opened for writing there.
    """
    num_examples = len(source)
    if num_examples == 0:
        raise ValueError("the split is empty")
    first = _prepare(source.read([0])[0][0], image_size)
    shape = (num_examples, *first.shape)
    if out_path is None:
        images = np.empty(shape, np.uint8)
    else:
        images = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.uint8, shape=shape)
    labels = np.empty(num_examples, np.int32)

    def fill(start: int) -> None:
        indices = range(start, min(start + _CHUNK, num_examples))
        for index, (image, label) in zip(indices, source.read(indices), strict=True):
            prepared = _prepare(image, image_size)
            if prepared.shape != first.shape:
                raise ValueError(
                    f"example {index} has shape {prepared.shape} but example 0 has "
                    f"{first.shape}; pass image_size to resize every image"
                )
            images[index] = prepared
            labels[index] = label

    with ThreadPoolExecutor(num_workers or default_num_workers()) as pool:
        list(pool.map(fill, range(0, num_examples, _CHUNK)))
    if isinstance(images, np.memmap):
        images.flush()
    return images, labels


def _prepare(image: np.ndarray, image_size: int | None) -> np.ndarray:
    rgb = to_rgb(image)
    return rgb if image_size is None else resize_bicubic(rgb, image_size)


def materialize_cached(
    source: ExampleSource,
    *,
    key: Mapping[str, object],
    cache_dir: str | os.PathLike[str] | None,
    image_size: int | None,
    num_workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``materialize(source)``, or the arrays ``cache_dir`` holds for the same ``key``.

    key: everything that determines the arrays (source, task, split, data location, ...),
    JSON-serialisable; its SHA-256 names the cached files and it is stored next to them.
    Cached images come back memory-mapped (read-only).
    """
    if cache_dir is None:
        return materialize(source, image_size=image_size, num_workers=num_workers)
    cache = Path(cache_dir)
    text = json.dumps({**key, "image_size": image_size}, sort_keys=True, default=str)
    stem = hashlib.sha256(text.encode()).hexdigest()[:20]
    images_path, labels_path = cache / f"{stem}.images.npy", cache / f"{stem}.labels.npy"
    if not labels_path.exists():  # written last: its presence marks a complete entry
        with replacing(images_path) as partial_images:
            _, labels = materialize(
                source, image_size=image_size, num_workers=num_workers, out_path=partial_images
            )
        write_text(cache / f"{stem}.json", text + "\n")
        with replacing(labels_path) as partial_labels, partial_labels.open("wb") as f:
            np.save(f, labels)
    labels = np.load(labels_path)
    if labels.shape[0] != len(source):
        raise ValueError(
            f"cache entry {labels_path} holds {labels.shape[0]} examples but the source has "
            f"{len(source)}; the data changed under the same key: delete {cache / stem}.*"
        )
    return np.load(images_path, mmap_mode="r"), labels
