"""NOAH's VTAB-1k export: list files of 'relative/path.jpg label' under <root>/<task>/."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import chex
import numpy as np
import pytest
from PIL import Image

from experiments.data import DataNotFoundError, load_task
from experiments.data.noah import open_noah_split, read_split_list


def _colour(index: int) -> tuple[int, int, int]:
    """A flat colour per example, far enough apart to survive JPEG."""
    return (index * 40 % 256, 255 - index * 40 % 256, 128)


def _write_split(root: Path, task: str, split: str, labels: list[int], size=(6, 5)) -> None:
    """Images images/<split>/<i> file.jpg of flat colour _colour(i) and the list file."""
    folder = root / task / "images" / split
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, label in enumerate(labels):
        Image.new("RGB", size, _colour(index)).save(folder / f"{index} file.jpg", quality=95)
        lines.append(f"images/{split}/{index} file.jpg {label}")
    (root / task / f"{split}.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("split", ["train800", "val200", "train800val200", "test"])
def test_reads_images_and_labels_in_list_order(tmp_path: Path, split: str):
    labels = [3, 0, 46, 7, 7]
    _write_split(tmp_path, "dtd", split, labels)
    arrays = load_task("dtd", source="noah", split=split, data_dir=tmp_path)
    chex.assert_shape(arrays.images, (5, 5, 6, 3))
    np.testing.assert_array_equal(arrays.labels, labels)
    assert arrays.num_classes == 47 and arrays.name == "dtd" and arrays.split == split
    expected = np.array([_colour(i) for i in range(5)], np.float32)
    np.testing.assert_allclose(arrays.images.mean(axis=(1, 2)), expected, atol=4)


def test_grey_jpegs_become_rgb_and_resize(tmp_path: Path):
    folder = tmp_path / "svhn" / "x"
    folder.mkdir(parents=True)
    Image.new("L", (7, 3), 200).save(folder / "a.jpg")
    Image.new("RGB", (4, 9), (10, 20, 30)).save(folder / "b.png")
    (tmp_path / "svhn" / "test.txt").write_text("x/a.jpg 1\nx/b.png 9\n")
    with pytest.raises(ValueError, match="pass image_size"):
        load_task("svhn", source="noah", split="test", data_dir=tmp_path)
    arrays = load_task("svhn", source="noah", split="test", data_dir=tmp_path, image_size=4)
    chex.assert_shape(arrays.images, (2, 4, 4, 3))
    np.testing.assert_allclose(arrays.images[0], 200, atol=2)
    np.testing.assert_array_equal(arrays.images[1], np.broadcast_to([10, 20, 30], (4, 4, 3)))


def test_list_parsing_keeps_spaces_and_rejects_bad_lines(tmp_path: Path):
    path = tmp_path / "list.txt"
    path.write_text("a b/c d.jpg 12\n\nplain.jpg 0\n")
    paths, labels = read_split_list(path)
    assert paths == (tmp_path / "a b/c d.jpg", tmp_path / "plain.jpg")
    np.testing.assert_array_equal(labels, [12, 0])
    path.write_text("ok.jpg 1\nno_label.jpg\n")
    with pytest.raises(ValueError, match=r"list.txt:2"):
        read_split_list(path)
    path.write_text("\ufeffa.jpg 3\n", encoding="utf-8")  # a byte-order mark (Windows editors)
    assert read_split_list(path)[0] == (tmp_path / "a.jpg",)
    path.write_text("a.jpg 3\n", encoding="utf-16")
    with pytest.raises(ValueError, match=r"list.txt is not UTF-8 text .*save the list as UTF-8"):
        read_split_list(path)


def test_a_missing_root_or_task_folder_is_named_as_such(tmp_path: Path):
    """A wrong data_dir said only that the list file was missing, deep under it."""
    root = tmp_path / "nope"
    with pytest.raises(DataNotFoundError, match=rf"^no NOAH vtab-1k root folder at {root}: get"):
        open_noah_split("cifar", "val200", root=root)
    _write_split(tmp_path, "dtd", "val200", [1, 2])  # data_dir one level too high, or a typo
    with pytest.raises(
        DataNotFoundError,
        match=rf"^no folder cifar in the NOAH root {tmp_path} \(it holds: \['dtd'\]\)",
    ):
        open_noah_split("cifar", "val200", root=tmp_path)


def test_missing_list_or_image_says_what_to_fetch(tmp_path: Path):
    (tmp_path / "cifar").mkdir()
    with pytest.raises(
        DataNotFoundError, match=r"cifar/val200\.txt.*NOAH.*<task>/val200\.txt exists"
    ):
        open_noah_split("cifar", "val200", root=tmp_path)
    _write_split(tmp_path, "cifar", "val200", [1, 2])
    with pytest.raises(DataNotFoundError, match=r"no NOAH split list at .*cifar/test\.txt"):
        open_noah_split("cifar", "test", root=tmp_path)
    (tmp_path / "cifar" / "images" / "val200" / "1 file.jpg").unlink()
    with pytest.raises(DataNotFoundError, match="1 missing images"):
        open_noah_split("cifar", "val200", root=tmp_path)


def test_a_test_list_holding_training_images_is_refused(tmp_path: Path):
    _write_split(tmp_path, "dtd", "train800val200", [1, 2, 3])
    (tmp_path / "dtd" / "test.txt").write_text(
        (tmp_path / "dtd" / "train800val200.txt").read_text()
    )
    with pytest.raises(ValueError, match=r"test.txt lists 3 images of .*train800val200.txt"):
        open_noah_split("dtd", "test", root=tmp_path)


def test_a_list_of_another_size_than_vtab_1k_is_warned_about(tmp_path: Path, caplog):
    _write_split(tmp_path, "dtd", "val200", [1, 2])
    with caplog.at_level(logging.WARNING, logger="experiments.data.noah"):
        open_noah_split("dtd", "val200", root=tmp_path)
    assert [r.getMessage().rsplit("/", 1)[1] for r in caplog.records] == [
        "val200.txt lists 2 images; VTAB-1k's val200 has 200"
    ]


def test_cache_misses_when_the_list_file_is_rewritten(tmp_path: Path):
    """The list file is part of the cache key: relabelling the same images in it (a fixed
    list) reads the new labels, not the cached old ones."""
    _write_split(tmp_path, "dtd", "test", [3, 0, 7])
    kwargs: dict[str, Any] = {"source": "noah", "split": "test", "data_dir": tmp_path,
                              "cache_dir": tmp_path / "c"}  # fmt: skip
    np.testing.assert_array_equal(load_task("dtd", **kwargs).labels, [3, 0, 7])
    list_file = tmp_path / "dtd" / "test.txt"
    relabelled = [12, 40, 5]
    lines = [line.rsplit(" ", 1)[0] for line in list_file.read_text().splitlines()]
    list_file.write_text(
        "".join(f"{line} {label}\n" for line, label in zip(lines, relabelled, strict=True))
    )
    np.testing.assert_array_equal(load_task("dtd", **kwargs).labels, relabelled)


def test_a_tilde_in_data_dir_names_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    _write_split(tmp_path / "vtab-1k", "dtd", "val200", [1, 2])
    arrays = load_task("dtd", source="noah", split="val200", data_dir="~/vtab-1k")
    np.testing.assert_array_equal(arrays.labels, [1, 2])


@pytest.mark.parametrize("text", ["", "\n \n"])
def test_an_empty_list_is_named(tmp_path: Path, text: str):
    """An empty list file failed later with a bare "the split is empty"."""
    (tmp_path / "dtd").mkdir()
    (tmp_path / "dtd" / "val200.txt").write_text(text)
    with pytest.raises(ValueError, match=r"dtd/val200\.txt lists no images"):
        load_task("dtd", source="noah", split="val200", data_dir=tmp_path)


def test_labels_outside_the_task_are_errors(tmp_path: Path):
    _write_split(tmp_path, "patch_camelyon", "test", [0, 2])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        open_noah_split("patch_camelyon", "test", root=tmp_path)


def test_bad_arguments(tmp_path: Path):
    with pytest.raises(ValueError, match="needs data_dir"):
        load_task("cifar", source="noah")
    with pytest.raises(ValueError, match="unknown VTAB-1k task"):
        open_noah_split("cifar100", "test", root=tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        open_noah_split("cifar", "train", root=tmp_path)
