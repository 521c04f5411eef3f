"""Local paths pass; URLs, and Paths pathlib made of URLs, are refused naming the setting; an
.npz that is none is refused naming its path."""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from experiments.data import load_task
from experiments.local_files import local_path, open_npz
from experiments.models.convnext_checkpoint import read_state_dict
from experiments.models.vit_checkpoint import load_npz


@pytest.mark.parametrize(
    "path", ["gs://bucket/runs", "s3://b/x.npz", "file:///tmp/x", Path("gs://bucket/runs")]
)
def test_a_url_is_refused_naming_the_setting(path: str | Path) -> None:
    with pytest.raises(ValueError, match=r"^workdir '.*' is a URL, .*mount the bucket"):
        local_path(path, what="workdir")


@pytest.mark.parametrize("path", ["runs/vtab", "/tmp/runs", "C:/runs", "C://runs", "runs:1/x", "."])
def test_a_local_path_passes_unchanged(path: str) -> None:
    assert local_path(path, what="workdir") == Path(path)
    assert local_path(Path(path), what="workdir") == Path(path)


def test_a_tilde_names_the_home_folder_where_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """~user of no user is kept as written (a folder may be named so), as the configs keep it:
    pathlib's expanduser raised RuntimeError, which the commands' error handling let through."""
    monkeypatch.setenv("HOME", "/home/me")
    assert local_path("~/runs", what="workdir") == Path("/home/me/runs")
    assert local_path("~no_such_user_x/runs", what="workdir") == Path("~no_such_user_x/runs")


@pytest.mark.parametrize("path", ["", " "])
def test_an_empty_path_is_refused_naming_the_setting(path: str) -> None:
    """Path("") is Path("."): an empty setting would read and write the working directory."""
    with pytest.raises(ValueError, match=r"^workdir is an empty path: give one"):
        local_path(path, what="workdir")


def _truncated(path: Path) -> None:
    """A real .npz cut in half: an interrupted download."""
    np.savez(path, images=np.zeros((1010, 3, 3), np.uint8), labels=np.arange(1010) % 3)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "write", [_truncated, lambda p: p.write_text("not an archive\n")], ids=["truncated", "text"]
)
@pytest.mark.parametrize(
    "read",
    [load_npz, read_state_dict, lambda p: load_task(str(p), source="npz")],
    ids=["vit_checkpoint", "convnext_checkpoint", "own_data"],
)
def test_an_npz_that_cannot_be_read_is_named(
    tmp_path: Path, write: Callable[[Path], Any], read: Callable[[Path], Any]
) -> None:
    """A truncated ViT-B_16.npz failed with a bare zipfile.BadZipFile naming no file."""
    path = tmp_path / "ViT-B_16.npz"
    write(path)
    at = re.escape(str(path))
    with pytest.raises(ValueError, match=f"^{at} is not a readable .npz archive") as refused:
        read(path)
    assert refused.type is ValueError
    # a text file was read as a pickle: numpy's advice to load it with allow_pickle
    assert "pickle" not in str(refused.value)


def test_a_file_that_is_no_zip_says_what_it_begins_with(tmp_path: Path) -> None:
    """An HTML error page saved as the .npz: the message shows its first bytes."""
    path = tmp_path / "w.npz"
    path.write_text("<html>not found</html>")
    with pytest.raises(ValueError, match=r"it is no zip of \.npy files: it begins b'<html>'$"):
        open_npz(path)
