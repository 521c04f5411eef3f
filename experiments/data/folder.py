"""Bring your own images: an .npz of arrays or a folder per class, split the VTAB-1k way.

- npz: ``images`` uint8 (N, H, W) or (N, H, W, C) with C in {1, 3}, ``labels`` int (N,),
  optionally ``num_classes`` (a scalar, at most N; default max(labels) + 1) and ``split_seed``
  (a scalar: the only seed its splits are meant for, as a pack of experiments.suite_data
  records; another seed is an error, since its train800 would hold the intended test images).
- folder: ``<root>/<class name>/<image file>``; classes are the sorted folder names, label =
  position in that order; images are every file with a common image suffix, sorted (other
  files are counted in a warning), turned upright by their EXIF orientation.

Both are split by a seeded permutation (experiments.data.splits), test = the rest (<= 10k).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from experiments.data.base import ArraySource, DataNotFoundError, ImageFileSource, check_labels
from experiments.data.splits import split_indices
from experiments.local_files import open_npz

log = logging.getLogger(__name__)
_said: set[str] = set()  # the warnings this process logged


def _warn_once(message: str, *args: Any) -> None:
    """``log.warning(message % args)``, once per process for the same text: each split of a
    task lists its folders again, and reads its npz again outside ``reading_npz_once``."""
    text = message % args
    if text not in _said:
        _said.add(text)
        log.warning(text)


SPLIT_SEED_KEY = "split_seed"
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
)


def existing_npz(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path; DataNotFoundError when no file is there."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"no npz file at {path}")
    return path


#: Inside ``reading_npz_once``: {(file, size, mtime, seed): (its examples, num_classes)}.
_read: contextvars.ContextVar[dict[tuple[str, int, int, int], tuple[ArraySource, int]] | None] = (
    contextvars.ContextVar("npz_read_once", default=None)
)


@contextlib.contextmanager
def reading_npz_once() -> Iterator[None]:
    """Within it an npz file is read and checked once for all of its splits (a run loads 3 or
    4), not once per split; a file rewritten meanwhile (other size or mtime) is read again."""
    token = _read.set({})
    try:
        yield
    finally:
        _read.reset(token)


def open_npz_split(
    path: str | os.PathLike[str], split: str, *, seed: int
) -> tuple[ArraySource, int]:
    """(examples of ``split``, num_classes) from an images + labels .npz file."""
    path = existing_npz(path)
    read = _read.get()
    if read is None:
        source, num_classes = _read_npz(path, seed=seed)
    else:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, seed)
        if key not in read:
            read[key] = _read_npz(path, seed=seed)
        source, num_classes = read[key]
    indices = split_indices(split, labels=source.labels, num_classes=num_classes, seed=seed)
    return ArraySource(source.images[indices], source.labels[indices]), num_classes


def _read_npz(path: Path, *, seed: int) -> tuple[ArraySource, int]:
    """(every example, num_classes) of the npz at ``path``, checked; ``seed`` must be the one
    it was packed for, if any."""
    with open_npz(path) as arrays:  # ValueError for a CSV, a pickle, a torn file, one array
        missing = {"images", "labels"} - set(arrays.files)
        if missing:
            raise ValueError(f"{path} lacks arrays {sorted(missing)} (has {arrays.files})")
        try:
            images, labels = arrays["images"], arrays["labels"]
            stored_classes = _scalar(arrays, "num_classes", path)
            stored_seed = _scalar(arrays, SPLIT_SEED_KEY, path)
        except ValueError as e:
            if "allow_pickle" not in str(e):
                raise
            raise ValueError(f"{path}: images and labels must be numeric arrays: {e}") from e
    if stored_seed is not None and int(stored_seed) != seed:
        raise ValueError(
            f"{path} was packed for split seed {int(stored_seed)}, not {seed}: with another seed "
            "its train800 / val200 would mix in the packed test examples; use "
            f"seed={int(stored_seed)} (--set data.split_seed={int(stored_seed)}) or re-pack it"
        )
    if images.ndim == 4 and images.shape[-1] not in (1, 3):
        raise ValueError(f"{path}: images must have 1 or 3 channels, got {images.shape}")
    try:
        source = ArraySource(images, labels)  # validates dtypes and shapes
    except ValueError as e:
        hint = ""
        if np.issubdtype(images.dtype, np.floating):
            hint = " (float pixels in [0, 1]: np.round(images * 255).astype(np.uint8))"
        raise ValueError(f"{path}: {e}{hint}") from e
    if stored_classes is not None:
        num_classes = stored_classes
    else:  # not max(initial=-1): -1 overflows unsigned labels
        num_classes = int(labels.max()) + 1 if labels.size else 0
    if num_classes > len(labels):  # class ids, not indices: a head (and a count) that wide
        how = "max(labels) + 1" if stored_classes is None else "its stored num_classes"
        raise ValueError(
            f"{path}: {num_classes} classes ({how}) for {len(labels)} examples: labels must "
            "number the classes 0, 1, 2, ... (relabel them)"
        )
    check_labels(labels, num_classes, where=str(path))
    _warn_empty_classes(labels, num_classes, path, guessed=stored_classes is None)
    return source, num_classes


def _warn_empty_classes(labels: np.ndarray, num_classes: int, path: Path, *, guessed: bool) -> None:
    """Log a warning naming the classes in [0, num_classes) without an example: labels
    numbered from 1 leave class 0 empty when num_classes is guessed as max(labels) + 1."""
    empty = np.flatnonzero(np.bincount(labels, minlength=num_classes) == 0).tolist()
    if not empty:
        return
    how = "max(labels) + 1" if guessed else "its stored num_classes"
    _warn_once(
        "%s: classes %s of %d (%s) have no examples%s", path, empty[:10], num_classes, how,
        "; labels numbered from 1? relabel them from 0" if guessed and empty[0] == 0 else "",
    )  # fmt: skip


def _scalar(arrays: Any, key: str, path: Path) -> int | None:
    """The integer scalar ``arrays[key]``, None when absent; ValueError naming key and file
    for another shape or dtype."""
    if key not in arrays.files:
        return None
    value = arrays[key]
    if value.shape != () or not np.issubdtype(value.dtype, np.integer):
        raise ValueError(f"{path}: {key} must be an integer scalar, got {value.dtype}{value.shape}")
    return int(value)


def _most_first(item: tuple[str, int]) -> tuple[int, str]:
    """Sort key of (suffix, count): the most frequent first, ties by name."""
    return -item[1], item[0]


def _hidden(path: Path) -> bool:
    """Dot files and folders (``.ipynb_checkpoints``, macOS ``._*``) and ``__MACOSX``: not data."""
    return path.name.startswith(".") or path.name == "__MACOSX"


def class_folders(root: Path) -> list[Path]:
    """The class folders of ``root``, sorted by name (their index is the label)."""
    if not root.is_dir():
        raise DataNotFoundError(f"no image folder at {root}")
    folders = sorted(child for child in root.iterdir() if child.is_dir() and not _hidden(child))
    if not folders:
        raise ValueError(f"{root} has no class folders (expected <root>/<class>/<image>)")
    return folders


def open_folder_split(
    root: str | os.PathLike[str], split: str, *, seed: int
) -> tuple[ImageFileSource, int]:
    """(examples of ``split``, num_classes) from a folder-per-class image tree."""
    folders = class_folders(Path(root))
    paths: list[Path] = []
    labels: list[int] = []
    skipped: Counter[str] = Counter()  # files of other suffixes, by suffix
    for label, folder in enumerate(folders):
        entries = [f for f in folder.iterdir() if not _hidden(f)]
        files = sorted(f for f in entries if f.suffix.lower() in IMAGE_SUFFIXES)
        skipped.update(f.suffix.lower() or f.name for f in entries
                       if f.is_file() and f.suffix.lower() not in IMAGE_SUFFIXES)  # fmt: skip
        nested = sorted(f.name for f in entries if f.is_dir())
        if not files:
            others = Counter(f.suffix.lower() or f.name for f in entries if f.is_file())
            found = []
            if nested:
                found.append(f"sub-folders {nested[:5]} (only a class folder's own files are read)")
            if others:
                found.append(f"other files {dict(others.most_common(5))}")
            raise ValueError(
                f"class folder {folder} holds no images ({sorted(IMAGE_SUFFIXES)})"
                + (f"; it holds {' and '.join(found)}" if found else "")
            )
        if nested:
            _warn_once(
                "class folder %s has sub-folders %s: their images are not read", folder, nested
            )
        paths.extend(files)
        labels.extend([label] * len(files))
    if skipped:
        counts = ", ".join(f"{k} x{n}" for k, n in sorted(skipped.items(), key=_most_first)[:10])
        _warn_once(
            "%s: %d files skipped, not named as images (%s); read: %s",
            root, sum(skipped.values()), counts, sorted(IMAGE_SUFFIXES),
        )  # fmt: skip
    label_array = np.asarray(labels, np.int32)
    indices = split_indices(split, labels=label_array, num_classes=len(folders), seed=seed)
    return ImageFileSource(tuple(paths[i] for i in indices), label_array[indices]), len(folders)
