"""Atomic writes: an interrupted writer leaves the previous file or none, never a torn one."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from peft_core.atomic_files import replacing, write_npz, write_png, write_text


def _interrupted_savez(f: Any, **arrays: Any) -> None:
    f.write(b"PK\x03\x04 half an archive")
    raise KeyboardInterrupt


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_into_new_folders(tmp_path: Path, compress: bool) -> None:
    arrays = {"a": np.arange(6).reshape(2, 3), "b/c": np.float32(2.5)}
    path = write_npz(tmp_path / "x" / "y" / "w.npz", arrays, compress=compress)
    with np.load(path) as got:
        assert sorted(got.files) == ["a", "b/c"]
        np.testing.assert_array_equal(got["a"], arrays["a"])
    assert [p.name for p in path.parent.iterdir()] == ["w.npz"]


@pytest.mark.parametrize("existing", [False, True])
def test_an_interrupted_write_leaves_the_old_file_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    path = tmp_path / "w.npz"
    if existing:
        write_npz(path, {"a": np.ones(3)})
    monkeypatch.setattr(np, "savez", _interrupted_savez)
    with pytest.raises(KeyboardInterrupt):
        write_npz(path, {"a": np.zeros(3)})
    assert [p.name for p in tmp_path.iterdir()] == (["w.npz"] if existing else [])
    if existing:
        with np.load(path) as got:
            np.testing.assert_array_equal(got["a"], np.ones(3))


def test_text_round_trip_and_an_interrupted_write(tmp_path: Path, monkeypatch) -> None:
    path = write_text(tmp_path / "a" / "r.json", '{"x": 1}\n')
    assert path.read_text() == '{"x": 1}\n'

    def interrupted(self: Path, text: str, encoding: str | None = None) -> int:
        with self.open("w") as f:
            f.write(text[:3])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_text(path, '{"x": 2}\n')
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]
    assert path.read_bytes() == b'{"x": 1}\n'


def test_png_round_trip_and_an_interrupted_write(tmp_path: Path) -> None:
    from matplotlib.figure import Figure
    from PIL import Image

    figure = Figure(figsize=(2, 1))
    figure.subplots().plot([0, 1], [1, 0])
    path = write_png(tmp_path / "p" / "f.png", figure, dpi=50)
    with Image.open(path) as image:
        assert (image.format, image.size) == ("PNG", (100, 50))

    class Interrupted:
        def savefig(self, target: Path, **kwargs: Any) -> None:
            Path(target).write_bytes(b"\x89PNG half")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_png(path, Interrupted())
    assert [p.name for p in path.parent.iterdir()] == ["f.png"]
    with Image.open(path) as image:
        assert image.size == (100, 50)


def test_writers_of_several_hosts_use_partial_files_of_their_own(tmp_path: Path, monkeypatch):
    """Processes of two hosts may share a pid; on a shared folder their partials must differ."""
    partials = []
    for host in ("host-a", "host-b"):
        monkeypatch.setattr(socket, "gethostname", lambda host=host: host)
        with replacing(tmp_path / "w.npz") as partial:
            partials.append(partial)
            partial.write_bytes(host.encode())
    assert partials[0] != partials[1] and all(p.parent == tmp_path for p in partials)
    assert (tmp_path / "w.npz").read_bytes() == b"host-b"


def test_writers_of_one_host_use_partial_files_of_their_own(tmp_path: Path, monkeypatch):
    """Two processes of one host writing one file at once never write into one partial file."""
    partials = []
    for pid in (4001, 4002):
        monkeypatch.setattr(os, "getpid", lambda pid=pid: pid)
        with replacing(tmp_path / "w.npz") as partial:
            partials.append(partial)
            partial.write_bytes(str(pid).encode())
    assert partials[0] != partials[1] and all(p.parent == tmp_path for p in partials)
    assert (tmp_path / "w.npz").read_bytes() == b"4002"


def test_a_partial_of_another_users_live_process_is_kept(tmp_path: Path, monkeypatch) -> None:
    """os.kill(pid, 0) on another user's live process raises PermissionError: alive, kept."""
    other = tmp_path / f".w.npz.{socket.gethostname()}.4242.partial"
    other.write_bytes(b"half")

    def kill(pid: int, signal: int) -> None:
        if pid == 4242:
            raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", kill)
    write_npz(tmp_path / "w.npz", {"a": np.ones(2)})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, "w.npz"])


def test_partials_of_killed_writers_are_removed_by_the_next_write(tmp_path: Path) -> None:
    """A SIGKILL skips the cleanup; the next writer of the file deletes this host's partials of
    dead processes and keeps a live one's (another writer's in progress)."""
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / f".w.npz.{host}.{int(dead.stdout)}.partial"
    live = tmp_path / f".w.npz.{host}.{os.getppid()}.partial"
    other_host = tmp_path / f".w.npz.elsewhere.{int(dead.stdout)}.partial"
    for partial in (stale, live, other_host):
        partial.write_bytes(b"half")
    write_npz(tmp_path / "w.npz", {"a": np.ones(2)})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, other_host.name, "w.npz"]
    )


@pytest.mark.parametrize("write", ["text", "npz"])
def test_a_reader_of_the_old_file_keeps_reading_it_whole(tmp_path: Path, write: str) -> None:
    """The new file is moved into place, not written over the old one: a reader that opened the
    old file before the write reads the old file, whole, after it."""
    path = tmp_path / "f"
    old, new = b"old contents " * 100, b"new"
    path.write_bytes(old)
    with path.open("rb") as reader:
        if write == "text":
            write_text(path, new.decode())
        else:
            write_npz(path, {"a": np.ones(3)})
        assert reader.read() == old
    assert path.read_bytes() != old


@pytest.mark.parametrize(
    ("folder_syncs", "refusal"), [(True, 0), (False, errno.EINVAL), (False, errno.EISDIR)]
)
def test_the_file_is_synced_before_it_replaces_the_old_one_and_its_folder_after(
    tmp_path: Path, monkeypatch, folder_syncs: bool, refusal: int
) -> None:
    """Durable across a power loss: fsync(partial), then the rename, then fsync(folder); a folder
    its filesystem will not sync (EINVAL on some network filesystems, EISDIR where a folder
    cannot be opened for syncing) still gets the file."""
    target = tmp_path / "sub" / "a.txt"
    target.parent.mkdir()
    folder = os.stat(target.parent).st_ino
    events: list[tuple[str, int]] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd: int) -> None:
        inode = os.fstat(fd).st_ino
        events.append(("fsync", inode))
        if inode == folder and not folder_syncs:
            raise OSError(refusal, os.strerror(refusal))
        fsync(fd)

    def recording_replace(src: Any, dst: Any) -> None:
        events.append(("replace", os.stat(src).st_ino))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    write_text(target, "new")
    file = os.stat(target).st_ino
    assert events == [("fsync", file), ("replace", file), ("fsync", folder)]
    assert target.read_text() == "new"


def test_a_folder_sync_that_fails_with_an_io_error_is_raised(tmp_path: Path, monkeypatch) -> None:
    folder = os.stat(tmp_path).st_ino
    fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        if os.fstat(fd).st_ino == folder:
            raise OSError(5, "Input/output error")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        write_text(tmp_path / "a.txt", "new")
