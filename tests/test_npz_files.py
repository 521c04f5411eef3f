"""Atomic npz writes: an interrupted writer leaves the previous file or none, never a torn one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from experiments.npz_files import write_npz


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
