"""Paths the experiments read and write are local filesystem paths.

A bucket mounted with gcsfuse (or NFS, Filestore) is one. A URL such as ``gs://bucket/runs`` is
refused: ``pathlib`` would turn it into the local folder ``gs:/bucket/runs`` without a word (each
host of a pod writing its own), and the atomic renames that checkpoints and results rely on
exist only on a filesystem.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import numpy as np

#: scheme:// and, for a Path made of a URL, scheme:/ (pathlib collapses the "//"); a scheme has
#: 2 characters or more, so a drive letter (C:/runs) is a path.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


def local_path(path: str | os.PathLike[str], *, what: str) -> Path:
    """``path`` as a Path, a leading ``~`` made the home folder; ValueError naming ``what`` if it
    is empty (which would be the working directory) or a URL (scheme://..., or a Path that
    pathlib made of one, scheme:/...)."""
    text = os.fspath(path)
    if not text.strip():
        raise ValueError(f"{what} is an empty path: give one ('.' is the working directory)")
    if _URL.match(text):
        raise ValueError(
            f"{what} {text!r} is a URL, and this code reads and writes local paths only: mount "
            "the bucket (e.g. gcsfuse, on every host of a pod) and pass the mounted path, or "
            "copy the files to a local disk"
        )
    return Path(os.path.expanduser(text))  # pathlib's raises for ~user of no user


def check_folder_path(folder: str | Path, *, what: str) -> None:
    """ValueError where ``folder``, or the nearest of its parents that exists, is a file."""
    path = Path(folder)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "is a file" if existing == path else f"lies under the file {existing}"
        raise ValueError(f"{what} {folder} {where}: give a folder's path")


def open_npz(path: str | os.PathLike[str]) -> np.lib.npyio.NpzFile:
    """``np.load(path)`` of an .npz archive of arrays (no pickles), to close (``with``);
    ValueError naming ``path`` where it is not one: a truncated download, a text file, a single
    .npy array."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
        if head[:2] != b"PK" and head != b"\x93NUMPY":  # else numpy reads it as a pickle
            raise ValueError(f"it is no zip of .npy files: it begins {head!r}")
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:  # a torn zip, a pickle
        raise ValueError(
            f"{os.fspath(path)} is not a readable .npz archive of arrays (a truncated "
            f"download?): {e}"
        ) from e
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{os.fspath(path)} holds one array, not an .npz archive of arrays")
    return loaded
