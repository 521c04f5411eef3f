"""check_available: a task's missing data is found before any run, with the load's own error."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_data_vtab import _cifar, _prepare

from experiments import pipeline, vtab
from experiments.data import load_task
from experiments.data.load import check_available

_RUN_SPLITS = ("test", "train800", "val200")


def _same_error(name: str, *, source: str, split: str = "test", **options: Any) -> str:
    """check_available's error for ``name``, asserted to be the one load_task gives."""
    with pytest.raises(FileNotFoundError) as loaded:
        load_task(name, source=source, split=split, **options)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError) as checked:
        check_available(name, source=source, splits=_RUN_SPLITS, **options)
    assert type(checked.value) is type(loaded.value)
    assert str(checked.value) == str(loaded.value)
    return str(checked.value)


def _folder(root: Path) -> Path:
    for label in range(2):
        (root / f"class{label}").mkdir(parents=True)
        Image.fromarray(np.full((4, 4, 3), label * 99, np.uint8)).save(root / f"class{label}/a.png")
    return root


def test_tfds_present_and_missing(tmp_path: Path):
    message = _same_error("cifar", source="tfds", data_dir=tmp_path)
    assert "tfds build cifar100" in message
    _prepare(tmp_path, "cifar100", {"train": [_cifar(i) for i in range(4)]})
    check_available("cifar", source="tfds", splits=_RUN_SPLITS, data_dir=tmp_path)
    message = _same_error("dsprites_loc", source="tfds", data_dir=tmp_path)  # another task
    assert "dsprites:2.*.*" in message


def test_tfds_version_is_the_one_checked(tmp_path: Path):
    _prepare(tmp_path, "cifar100", {"train": [_cifar(i) for i in range(4)]})
    assert "cifar100:2.*.*" in _same_error(
        "cifar", source="tfds", data_dir=tmp_path, version="2.*.*"
    )


def test_noah_present_and_missing(tmp_path: Path):
    (tmp_path / "dtd").mkdir()
    for split in _RUN_SPLITS:  # list files only: their images are not looked at
        (tmp_path / "dtd" / f"{split}.txt").write_text("images/a.jpg 0\n")
    check_available("dtd", source="noah", splits=_RUN_SPLITS, data_dir=tmp_path)
    (tmp_path / "dtd" / "val200.txt").unlink()
    assert "dtd/val200.txt" in _same_error("dtd", source="noah", split="val200", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="train800val200"):  # a search's retrain
        check_available("dtd", source="noah", splits=["train800val200"], data_dir=tmp_path)


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist5k"])
def test_offline_missing_files(tmp_path: Path, name: str):
    _same_error(name, source="offline", data_dir=tmp_path)


def test_offline_present(tmp_path: Path):
    (tmp_path / "mnist_5k.csv.gz").write_bytes(b"")  # not read
    check_available("mnist5k", source="offline", splits=_RUN_SPLITS, data_dir=tmp_path)


def test_digits_without_scikit_learn(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # the import fails, as uninstalled
    assert "scikit-learn" in _same_error("digits", source="offline")


def test_npz_present_and_missing(tmp_path: Path):
    assert "no npz file" in _same_error(str(tmp_path / "absent.npz"), source="npz")
    (tmp_path / "data.npz").write_bytes(b"")  # not read
    check_available(str(tmp_path / "data.npz"), source="npz", splits=_RUN_SPLITS)


def test_folder_present_and_missing(tmp_path: Path):
    assert "no image folder" in _same_error(str(tmp_path / "absent"), source="folder")
    check_available(str(_folder(tmp_path / "here")), source="folder", splits=_RUN_SPLITS)


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_later_tasks_missing_data_fails_before_the_first_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dry_run: bool
):
    runs: list[str] = []
    monkeypatch.setattr(pipeline, "run", lambda config, out: runs.append(config.data.task))
    here, absent = _folder(tmp_path / "here"), tmp_path / "absent"
    argv = [
        f"--tasks={here},{absent}", "--source=folder", "--preset=quickstart",
        f"--workdir={tmp_path / 'w'}", *(["--dry_run"] if dry_run else []),
    ]  # fmt: skip
    with pytest.raises(FileNotFoundError, match=f"^no image folder at {absent}$"):
        vtab.main(argv)
    assert runs == []
    assert not (tmp_path / "w").exists()
