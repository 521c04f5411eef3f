"""VTAB-1k as exported by NOAH (the JPEG copy most PEFT papers, GLoRA included, train from).

Layout: ``<root>/<task>/<split>.txt`` for split in train800 / val200 / train800val200 / test,
each line ``relative/path.jpg label`` with the path relative to ``<root>/<task>/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from experiments.data.base import DataNotFoundError, ImageFileSource, check_labels
from experiments.data.splits import check_vtab1k_split
from experiments.data.vtab import vtab_task

NOAH_HINT = (
    "get NOAH's vtab-1k export (see the data preparation notes of github.com/ZhangYuanhan-AI/"
    "NOAH) on a machine with internet access and copy it so that <root>/<task>/train800.txt "
    "exists"
)


def split_list_path(root: str | os.PathLike[str], name: str, split: str) -> Path:
    """``<root>/<name>/<split>.txt``: the list file of one split."""
    return Path(root) / name / f"{split}.txt"


def read_split_list(path: Path) -> tuple[tuple[Path, ...], np.ndarray]:
    """Parse a NOAH list file -> (absolute image paths, labels (N,) int32)."""
    paths: list[Path] = []
    labels: list[int] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
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
    list_path = split_list_path(root, name, split)
    if not list_path.is_file():
        raise DataNotFoundError(f"no NOAH split list at {list_path}; {NOAH_HINT}")
    paths, labels = read_split_list(list_path)
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise DataNotFoundError(
            f"{list_path} lists {len(missing)} missing images, first {missing[0]}; {NOAH_HINT}"
        )
    check_labels(labels, task.num_classes, where=str(list_path))
    return ImageFileSource(paths, labels)
