"""Compact, portable copies of the offline tasks for the offline suite (npz "bring your own").

A *pack* is an .npz (``images`` uint8 (N, H, W), ``labels`` (N,), ``num_classes``,
``split_seed`` = s) laid out so that ``load_task(pack, source="npz", seed=s)`` returns exactly
the given train800 / val200 / test arrays, in order (another seed is refused). The npz source
splits by ``perm = default_rng(s).permutation(N)`` (experiments.data.splits, no official test
set): train800 = perm[:800], val200 = perm[800:1000], test = perm[1000:1000 + 10k]. With
N = 1000 + len(test) a pack therefore stores

    images[perm[i]] = concat(train800, val200, test)[i]          for i < N

so an offline task (Fashion-MNIST keeps its official test set) travels as a few MB at native
28x28, and the few-shot sets ("<k>shot": the first k examples of each class in pool order,
val200 left out, so all inside train800 here) come out the same as the offline ones wherever
train800 holds k of each class; ``check_pack`` proves it.
A few-shot pack keeps val200 and test and fills train800 with the k-shot set tiled 800 / (C k)
times, so every shot count trains for the same number of optimiser steps.

Weights travel as compressed float16 copies (``half_precision_copy``); ``full_precision_copy``
turns them back into float32 npz files (the values keep their float16 rounding).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from experiments.data.folder import SPLIT_SEED_KEY, open_npz_split
from experiments.data.offline import open_offline_split
from experiments.data.splits import TEST_CAP, TRAIN_SIZE, VAL_SIZE, split_indices
from peft_core.atomic_files import write_npz

Arrays = tuple[np.ndarray, np.ndarray]


def pack_positions(num_test: int, *, seed: int) -> np.ndarray:
    """(1000 + num_test,) positions in a pack of the train800, val200 and test examples."""
    if not 0 < num_test <= TEST_CAP:
        raise ValueError(f"a pack holds 1 to {TEST_CAP} test examples, got {num_test}")
    size = TRAIN_SIZE + VAL_SIZE + num_test
    dummy = np.zeros(size, np.int32)
    first = split_indices("train800val200", labels=dummy, num_classes=1, seed=seed)
    test = split_indices("test", labels=dummy, num_classes=1, seed=seed)
    return np.concatenate([first, test])


def write_pack(
    path: str | os.PathLike[str],
    *,
    train: Arrays,
    val: Arrays,
    test: Arrays,
    num_classes: int,
    seed: int,
) -> Path:
    """Write (images, labels) of train800 / val200 / test as a pack (see module docstring)."""
    parts = {"train": train, "val": val, "test": test}
    for name, want in (("train", TRAIN_SIZE), ("val", VAL_SIZE)):
        if len(parts[name][1]) != want:
            raise ValueError(f"{name} must hold {want} examples, got {len(parts[name][1])}")
    ordered_images = np.concatenate([images for images, _ in parts.values()])
    ordered_labels = np.concatenate([labels for _, labels in parts.values()]).astype(np.int32)
    positions = pack_positions(len(test[1]), seed=seed)
    images = np.empty_like(ordered_images)
    labels = np.empty_like(ordered_labels)
    images[positions] = ordered_images
    labels[positions] = ordered_labels
    arrays = {"images": images, "labels": labels, "num_classes": np.int32(num_classes)}
    return write_npz(path, {**arrays, SPLIT_SEED_KEY: np.int64(seed)}, compress=True)


def pack_seed(path: str | os.PathLike[str]) -> int | None:
    """The split seed a pack was written for (None: not recorded, e.g. a user's own npz)."""
    with np.load(path) as arrays:
        return int(arrays[SPLIT_SEED_KEY]) if SPLIT_SEED_KEY in arrays.files else None


def offline_pack(
    task: str, path: str | os.PathLike[str], *, seed: int, data_dir: str | None = None
) -> Path:
    """Pack offline ``task`` (native size, grey) with its seed-``seed`` splits."""
    opened = {
        key: open_offline_split(task, name, seed=seed, data_dir=data_dir)
        for key, name in (("train", "train800"), ("val", "val200"), ("test", "test"))
    }
    return write_pack(
        path,
        **{key: (source.images, source.labels) for key, (source, _) in opened.items()},
        num_classes=opened["val"][1],
        seed=seed,
    )


def few_shot_pack(
    pack: str | os.PathLike[str], shots: int, path: str | os.PathLike[str], *, seed: int
) -> Path:
    """A pack whose train800 is ``pack``'s ``<shots>shot`` set tiled to 800 examples."""
    train, num_classes = open_npz_split(pack, f"{shots}shot", seed=seed)
    per_set = num_classes * shots
    if TRAIN_SIZE % per_set:
        raise ValueError(
            f"{shots} shots x {num_classes} classes = {per_set} does not divide {TRAIN_SIZE}"
        )
    repeats = TRAIN_SIZE // per_set
    val, _ = open_npz_split(pack, "val200", seed=seed)
    test, _ = open_npz_split(pack, "test", seed=seed)
    return write_pack(
        path,
        train=(np.tile(train.images, (repeats,) + (1,) * (train.images.ndim - 1)),
               np.tile(train.labels, repeats)),
        val=(val.images, val.labels),
        test=(test.images, test.labels),
        num_classes=num_classes,
        seed=seed,
    )  # fmt: skip


def check_pack(
    pack: str | os.PathLike[str],
    task: str,
    *,
    seed: int,
    shots: tuple[int, ...] = (),
    data_dir: str | None = None,
) -> None:
    """Raise ValueError unless ``pack``'s splits (and k-shot sets) equal offline ``task``'s."""
    names = ("train800", "val200", "test", *(f"{k}shot" for k in shots))
    for name in names:
        want = open_offline_split(task, name, seed=seed, data_dir=data_dir)[0]
        got = open_npz_split(pack, name, seed=seed)[0]
        same = np.array_equal(got.images, want.images) and np.array_equal(got.labels, want.labels)
        if not same:
            raise ValueError(f"{pack}: split {name!r} differs from offline task {task!r}")


def half_precision_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Copy an npz with every float32 array stored as float16 (other arrays unchanged),
    deflate-compressed (what travels)."""
    return _cast_copy(src, dst, np.float32, np.float16, compress=True)


def full_precision_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Copy an npz with every float16 array stored as float32 (other arrays unchanged)."""
    return _cast_copy(src, dst, np.float16, np.float32, compress=False)


def _cast_copy(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    old: type,
    new: type,
    *,
    compress: bool,
) -> Path:
    with np.load(src, allow_pickle=False) as npz, np.errstate(over="ignore"):  # checked below
        arrays = {k: npz[k].astype(new) if npz[k].dtype == old else npz[k] for k in npz.files}
        lost = [
            k for k in npz.files if npz[k].dtype == old and not _same_finiteness(npz[k], arrays[k])
        ]
    if lost:  # float16 holds magnitudes up to 65504: larger values would travel as inf
        raise ValueError(f"{src}: {', '.join(lost)} hold finite values that {np.dtype(new)} cannot")
    return write_npz(dst, arrays, compress=compress)


def _same_finiteness(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(np.isfinite(a), np.isfinite(b)))
