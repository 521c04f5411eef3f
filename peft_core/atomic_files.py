"""Write files atomically, so an interrupted or concurrent writer never leaves a torn one.

Each writer fills a partial file named after its host and process beside the target, syncs it to
disk, then moves it into place with ``os.replace`` and syncs the folder: readers see the old
file, or none, or the whole new one, also after a power loss or an OS crash on Linux (where
the filesystem syncs folders; some network filesystems refuse, and then only the file is synced;
macOS's fsync leaves data in the drive's cache, which only ``F_FULLFSYNC`` flushes),
and processes of several hosts writing to one shared folder never write into the same partial
file.
Every file the libraries and the experiments write goes through ``replacing`` (the search state,
subnet.json and plots of ``glora_jax``; checkpoint exports, caches, results and reports), but
``metrics.csv``, which a run appends to row by row (its reader skips a torn last row), and the
checkpoints, which Orbax writes atomically itself.
"""

from __future__ import annotations

import contextlib
import errno
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
    host = socket.gethostname()
    _remove_dead_partials(path, host)
    partial = path.with_name(f".{path.name}.{host}.{os.getpid()}.partial")
    try:
        yield partial
        _sync(partial)
        os.replace(partial, path)
        _sync_folder(path.parent)
    finally:
        partial.unlink(missing_ok=True)


def _sync(path: Path, flags: int = os.O_RDWR) -> None:
    """fsync ``path``'s data and metadata (its writer has closed it), opened with ``flags``."""
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: errno values of a folder its filesystem or OS will not sync (network filesystems; Windows
#: opens no folder): the rename stands, unsynced. Any other error (EIO) is raised.
_UNSYNCABLE_FOLDER = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EACCES, errno.EPERM,
                                errno.EBADF, errno.EISDIR})  # fmt: skip


def _sync_folder(folder: Path) -> None:
    """fsync ``folder``, so that a rename into it is on disk; skipped where the filesystem refuses
    to sync a folder (``_UNSYNCABLE_FOLDER``)."""
    try:
        _sync(folder, os.O_RDONLY)
    except OSError as e:
        if e.errno not in _UNSYNCABLE_FOLDER:
            raise


def _remove_dead_partials(path: Path, host: str) -> None:
    """Delete partial files of ``path`` left by killed processes of this host (a SIGKILL skips
    the cleanup; a ViT-B merged.npz leaves 330 MB)."""
    for partial in path.parent.glob(f".{path.name}.{host}.*.partial"):
        pid = partial.name.removesuffix(".partial").rpartition(".")[2]
        if pid.isdigit() and not _alive(int(pid)):
            partial.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


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


def write_png(path: str | os.PathLike[str], figure: Any, *, dpi: int = 120) -> Path:
    """A matplotlib ``figure`` (anything with ``savefig``) as a PNG at ``path``, atomically."""
    with replacing(path) as partial:
        figure.savefig(partial, dpi=dpi, format="png")
    return Path(path)
