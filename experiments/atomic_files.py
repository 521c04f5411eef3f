"""Write files atomically, so an interrupted or concurrent writer never leaves a torn one.

Each writer fills a partial file named after its host and process beside the target, then moves
it into place with ``os.replace``: readers see the old file, or none, or the whole new one, and
processes of several hosts writing to one shared folder never write into the same partial file.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields the partial path to write (parents of ``path`` created); moves it onto ``path`` when
    the block ends without an exception and deletes it otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.partial")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_npz(
    path: str | os.PathLike[str], arrays: Mapping[str, Any], *, compress: bool = False
) -> Path:
    """``np.savez`` (or ``savez_compressed``) of ``arrays`` to ``path``, atomically."""
    with replacing(path) as partial, partial.open("wb") as f:
        (np.savez_compressed if compress else np.savez)(f, **arrays)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """``text`` (UTF-8) to ``path``, atomically."""
    with replacing(path) as partial:
        partial.write_text(text, encoding="utf-8")
    return Path(path)
