"""VTAB-1k as exported by NOAH (the JPEG copy most PEFT papers, GLoRA included, train from).

Layout: ``<root>/<task>/<split>.txt`` for split in train800 / val200 / train800val200 / test,
each line ``relative/path.jpg label`` with the path relative to ``<root>/<task>/``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from experiments.data.base import DataNotFoundError, ImageFileSource, check_labels
from experiments.data.splits import TRAIN_SIZE, VAL_SIZE, check_vtab1k_split
from experiments.data.vtab import vtab_task

log = logging.getLogger(__name__)

NOAH_HINT = (
    "get NOAH's vtab-1k export (see the data preparation notes of github.com/ZhangYuanhan-AI/"
    "NOAH) on a machine with internet access and copy it so that <root>/<task>/{}.txt exists"
)


def split_list_path(root: str | os.PathLike[str], name: str, split: str) -> Path:
    """``<root>/<name>/<split>.txt``: the list file of one split."""
    return Path(root) / name / f"{split}.txt"


def existing_split_list(root: str | os.PathLike[str], name: str, split: str) -> Path:
    """``split_list_path``; DataNotFoundError, saying what to fetch, when no file is there
    (naming the root, or the task's folder, where that is what is missing)."""
    list_path = split_list_path(root, name, split)
    if not Path(root).is_dir():
        raise DataNotFoundError(
            f"no NOAH vtab-1k root folder at {root}: {NOAH_HINT.format(split)}, and pass that "
            "<root> as data_dir"
        )
    if not list_path.parent.is_dir():
        held = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
        raise DataNotFoundError(
            f"no folder {name} in the NOAH root {root} (it holds: {held[:20]}); "
            f"{NOAH_HINT.format(split)}"
        )
    if not list_path.is_file():
        raise DataNotFoundError(f"no NOAH split list at {list_path}; {NOAH_HINT.format(split)}")
    return list_path


def read_split_list(path: Path) -> tuple[tuple[Path, ...], np.ndarray]:
    """Parse a NOAH list file -> (absolute image paths, labels (N,) int32)."""
    paths: list[Path] = []
    labels: list[int] = []
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark would join the first path
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text ({error}): save the list as UTF-8") from error
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        relative, _, label = line.strip().rpartition(" ")
        if not relative or not label.lstrip("-").isdigit():
            raise ValueError(f"{path}:{number}: expected 'relative/path.jpg label', got {line!r}")
        paths.append(path.parent / relative)
        labels.append(int(label))
    return tuple(paths), np.asarray(labels, np.int32)


def open_noah_split(name: str, split: str, *, root: str | os.PathLike[str]) -> ImageFileSource:
    """The ``split`` list of VTAB-1k task ``name`` under ``root`` (NOAH's vtab-1k folder)."""
    task = vtab_task(name)
    check_vtab1k_split(split)
    list_path = existing_split_list(root, name, split)
    paths, labels = read_split_list(list_path)
    if not paths:
        raise ValueError(f"{list_path} lists no images; {NOAH_HINT.format(split)}")
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise DataNotFoundError(
            f"{list_path} lists {len(missing)} missing images, first {missing[0]}; "
            + NOAH_HINT.format(split)
        )
    check_labels(labels, task.num_classes, where=str(list_path))
    sizes = {"train800": TRAIN_SIZE, "val200": VAL_SIZE, "train800val200": TRAIN_SIZE + VAL_SIZE}
    if split in sizes and len(paths) != sizes[split]:  # a warning: small lists serve tests
        log.warning("%s lists %d images; VTAB-1k's %s has %d", list_path, len(paths), split,
                    sizes[split])  # fmt: skip
    if split == "test":
        _check_disjoint(list_path, paths, split_list_path(root, name, "train800val200"))
    return ImageFileSource(paths, labels)


def _check_disjoint(test_list: Path, test_paths: tuple[Path, ...], train_list: Path) -> None:
    """ValueError when the test list names an image of the training list (when it exists)."""
    if not train_list.is_file():
        return
    shared = sorted(set(test_paths) & set(read_split_list(train_list)[0]))
    if shared:
        raise ValueError(
            f"{test_list} lists {len(shared)} images of {train_list}, first {shared[0]}: the test "
            "split must not hold training images"
        )
