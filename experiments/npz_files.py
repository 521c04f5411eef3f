"""Write .npz files atomically, so an interrupted or concurrent writer never leaves a torn one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def write_npz(
    path: str | os.PathLike[str], arrays: Mapping[str, Any], *, compress: bool = False
) -> Path:
    """Write ``arrays`` to ``path`` (parents created) through a per-process partial file moved
    into place with ``os.replace``: readers see the old file, or none, or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with partial.open("wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **arrays)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path
