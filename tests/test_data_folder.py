"""Bring-your-own data: an images + labels .npz, or a folder per class."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import chex
import numpy as np
import pytest
from PIL import Image

from experiments.data import DataNotFoundError, folder, load_task
from experiments.data.folder import open_folder_split, reading_npz_once
from experiments.data.load import check_available
from experiments.local_files import open_npz


def _tagged(count: int, shape: tuple[int, ...]) -> np.ndarray:
    images = np.zeros((count, *shape), np.uint8)
    images[:, 0, 0, ...] = (np.arange(count) % 256).reshape(-1, *([1] * (len(shape) - 2)))
    images[:, 0, 1, ...] = (np.arange(count) // 256).reshape(-1, *([1] * (len(shape) - 2)))
    return images


def _tags(images: np.ndarray) -> np.ndarray:
    return images[:, 0, 0, 0].astype(int) + 256 * images[:, 0, 1, 0].astype(int)


@pytest.mark.parametrize("shape", [(5, 4), (5, 4, 1), (5, 4, 3)])
def test_npz_splits_follow_the_seeded_permutation(tmp_path: Path, shape: tuple[int, ...]):
    path = tmp_path / "mine.npz"
    np.savez(path, images=_tagged(1100, shape), labels=np.arange(1100) % 7)
    permutation = np.random.default_rng(5).permutation(1100)
    for split, expected in [("train800", permutation[:800]), ("test", permutation[1000:])]:
        arrays = load_task(str(path), source="npz", split=split, seed=5)
        chex.assert_shape(arrays.images, (len(expected), 5, 4, 3))
        np.testing.assert_array_equal(_tags(arrays.images), expected)
        np.testing.assert_array_equal(arrays.labels, expected % 7)
        assert arrays.num_classes == 7


def test_an_npz_is_read_once_for_all_its_splits_inside_reading_npz_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "mine.npz"
    np.savez(path, images=_tagged(1100, (5, 4, 3)), labels=np.arange(1100) % 7)
    splits = ("train800", "val200", "train800val200", "test")
    alone = {s: load_task(str(path), source="npz", split=s, seed=2) for s in splits}
    reads: list[Path] = []
    monkeypatch.setattr(folder, "open_npz", lambda p: reads.append(p) or open_npz(p))
    with reading_npz_once():
        together = {s: load_task(str(path), source="npz", split=s, seed=2) for s in splits}
        assert len(reads) == 1
        load_task(str(path), source="npz", split="test", seed=3)  # another seed's check
        assert len(reads) == 2
        np.savez(path, images=_tagged(1200, (5, 4, 3)), labels=np.arange(1200) % 7)
        assert len(load_task(str(path), source="npz", split="test", seed=2)) == 200  # rewritten
        assert len(reads) == 3
    chex.assert_trees_all_equal(
        {s: (a.images, a.labels) for s, a in together.items()},
        {s: (a.images, a.labels) for s, a in alone.items()},
    )
    load_task(str(path), source="npz", split="test", seed=2)
    assert len(reads) == 4  # outside it, each load reads the file


def test_npz_num_classes_can_be_stored(tmp_path: Path):
    path = tmp_path / "mine.npz"
    np.savez(path, images=_tagged(1010, (3, 3)), labels=np.zeros(1010, int), num_classes=4)
    assert load_task(str(path), source="npz", split="val200").num_classes == 4


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint64])
def test_npz_unsigned_labels_count_their_classes(tmp_path: Path, dtype: type):
    """max(labels, initial=-1) overflowed on unsigned labels (MNIST's IDX labels are uint8)."""
    path = tmp_path / "mine.npz"
    np.savez(path, images=_tagged(1100, (3, 3)), labels=(np.arange(1100) % 7).astype(dtype))
    arrays = load_task(str(path), source="npz", split="train800")
    assert arrays.num_classes == 7
    expected = np.random.default_rng(0).permutation(1100)[:800] % 7
    np.testing.assert_array_equal(arrays.labels, expected)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        (
            {"images": np.zeros((1010, 3, 3), np.float32), "labels": np.zeros(1010, int)},
            r"bad.npz: images must be uint8, got float32 \(float pixels in \[0, 1\]: np.round",
        ),
        (
            {"images": np.zeros((1010, 3, 3), np.uint8), "labels": np.zeros(1010, np.float32)},
            "bad.npz: labels must be integers, got float32",
        ),
        (
            {"images": np.zeros((1010, 3, 3, 2), np.uint8), "labels": np.zeros(1010, int)},
            "1 or 3 channels",
        ),
        (
            {"images": np.zeros((1010, 3, 3), np.uint8), "labels": np.zeros(1009, int)},
            r"labels must be \(1010,\) to match images \(1010, 3, 3\), got \(1009,\)",
        ),
        (
            {"images": np.zeros((1010, 9), np.uint8), "labels": np.zeros(1010, int)},
            r"bad.npz: images must be \(N, H, W\) or \(N, H, W, C\), got \(1010, 9\)",
        ),
        (
            {"images": np.zeros((1010, 3, 3, 1, 1), np.uint8), "labels": np.zeros(1010, int)},
            r"images must be \(N, H, W\) or \(N, H, W, C\), got \(1010, 3, 3, 1, 1\)",
        ),
        ({"images": np.zeros((1010, 3, 3), np.uint8)}, "lacks arrays"),
        (
            {
                "images": np.zeros((1010, 3, 3), np.uint8),
                "labels": np.full(1010, 3),
                "num_classes": 2,
            },
            r"\[0, 2\)",
        ),
        (
            {
                "images": np.zeros((1010, 3, 3), np.uint8),
                "labels": np.zeros(1010, int),
                "num_classes": np.array([5, 5]),
            },
            r"num_classes must be an integer scalar, got int64\(2,\)",
        ),
        (
            {
                "images": np.zeros((1010, 3, 3), np.uint8),
                "labels": np.zeros(1010, int),
                "num_classes": 5.7,
            },
            r"num_classes must be an integer scalar, got float64\(\)",
        ),
        (
            {"images": np.empty(1010, object), "labels": np.zeros(1010, int)},
            "images and labels must be numeric arrays",
        ),
        (  # class ids: a head of 2**40 outputs (a MemoryError traceback counting them)
            {"images": np.zeros((1010, 3, 3), np.uint8), "labels": np.arange(1010) % 2 << 40},
            r"bad.npz: 1099511627777 classes \(max\(labels\) \+ 1\) for 1010 examples: labels "
            r"must number the classes 0, 1, 2, ... \(relabel them\)",
        ),
        (
            {
                "images": np.zeros((1010, 3, 3), np.uint8),
                "labels": np.zeros(1010, int),
                "num_classes": 1 << 40,
            },
            r"1099511627776 classes \(its stored num_classes\) for 1010 examples",
        ),
        (  # labels.max() of nothing: "zero-size array to reduction operation maximum"
            {"images": np.zeros((0, 3, 3), np.uint8), "labels": np.zeros(0, int)},
            "a VTAB-1k split needs more than 1000 examples .*, got 0",
        ),
    ],
)
def test_npz_errors(tmp_path: Path, arrays: dict[str, Any], match: str):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match):
        load_task(str(path), source="npz")


def test_folder_per_class(tmp_path: Path):
    counts = {"b_cat": 400, "a_dog": 500, "c_eel": 300}
    for name, count in counts.items():
        (tmp_path / name).mkdir()
        shade = {"a_dog": 10, "b_cat": 120, "c_eel": 240}[name]
        for index in range(count):
            Image.new("L", (3, 2), shade).save(tmp_path / name / f"{index:04d}.png")
    (tmp_path / "a_dog" / "notes.txt").write_text("not an image")
    # macOS and Jupyter leave hidden files and folders beside the data: neither is a class
    (tmp_path / "a_dog" / "._0001.png").write_bytes(b"AppleDouble metadata")
    for hidden in (".ipynb_checkpoints", "__MACOSX"):
        (tmp_path / hidden).mkdir()
        Image.new("L", (3, 2), 0).save(tmp_path / hidden / "0000.png")
    arrays = load_task(str(tmp_path), source="folder", split="train800val200")
    chex.assert_shape(arrays.images, (1000, 2, 3, 3))
    assert arrays.num_classes == 3
    shade_of_label = np.array([10, 120, 240])  # sorted folder names: a_dog, b_cat, c_eel
    np.testing.assert_array_equal(arrays.images[:, 0, 0, 0], shade_of_label[arrays.labels])
    test = load_task(str(tmp_path), source="folder", split="test")
    assert len(test) == 200
    few = load_task(str(tmp_path), source="folder", split="2shot")
    np.testing.assert_array_equal(np.bincount(few.labels), [2, 2, 2])


def test_folder_splits_follow_sorted_file_names_whatever_the_directory_order(tmp_path: Path):
    """The same seed gives the same split on every filesystem: files are read in sorted order
    (class folders, then names), then split as an npz of that order is."""
    rng = np.random.default_rng(0)
    names = {"a_dog": 600, "b_cat": 500}
    images, labels = [], []
    for label, (name, count) in enumerate(names.items()):
        (tmp_path / "tree" / name).mkdir(parents=True)
        tagged = _tagged(count, (2, 3, 3)) + np.uint8(100 * label)  # file number, class
        for index in rng.permutation(count):  # created out of order
            Image.fromarray(tagged[index]).save(tmp_path / "tree" / name / f"{index:04d}.png")
        images.append(tagged)
        labels.append(np.full(count, label))
    np.savez(tmp_path / "sorted.npz", images=np.concatenate(images), labels=np.concatenate(labels))
    for split in ("train800val200", "test", "3shot"):
        got = load_task(str(tmp_path / "tree"), source="folder", split=split, seed=7)
        want = load_task(str(tmp_path / "sorted.npz"), source="npz", split=split, seed=7)
        np.testing.assert_array_equal(got.images, want.images)
        np.testing.assert_array_equal(got.labels, want.labels)


def test_a_missing_npz_is_not_found(tmp_path: Path):
    with pytest.raises(DataNotFoundError, match=r"^no npz file at .*absent\.npz$"):
        load_task(str(tmp_path / "absent.npz"), source="npz")
    (tmp_path / "folder.npz").mkdir()  # a folder of that name is no npz file either
    with pytest.raises(DataNotFoundError, match=r"^no npz file at .*folder\.npz$"):
        load_task(str(tmp_path / "folder.npz"), source="npz")


def test_folder_errors(tmp_path: Path):
    with pytest.raises(DataNotFoundError, match="no image folder"):
        load_task(str(tmp_path / "nowhere"), source="folder")
    with pytest.raises(ValueError, match="no class folders"):
        load_task(str(tmp_path), source="folder")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match=r"empty_class holds no images \(\["):
        load_task(str(tmp_path), source="folder")
    (tmp_path / "empty_class" / "nested").mkdir()
    (tmp_path / "empty_class" / "a.pgm").write_bytes(b"P5")
    with pytest.raises(ValueError, match=r"holds sub-folders \['nested'\] \(only a class "
                       r"folder's own files are read\) and other files \{'.pgm': 1\}"):  # fmt: skip
        load_task(str(tmp_path), source="folder")
    with pytest.raises(ValueError, match="takes its path as name"):
        load_task(str(tmp_path), source="folder", data_dir=tmp_path)


def test_a_broken_link_among_the_images_is_named(tmp_path: Path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for index in range(505):
            Image.new("L", (3, 2), 9).save(tmp_path / name / f"{index:04d}.png")
    (tmp_path / "a" / "zz.png").symlink_to(tmp_path / "moved.png")  # the image was moved
    errors = []
    for split in ("train800val200", "test"):  # the link is in one of them
        try:
            load_task(str(tmp_path), source="folder", split=split)
        except DataNotFoundError as error:
            errors.append(str(error))
    (error,) = errors
    assert re.search(r"a/zz.png is a broken link \(to .*moved.png\): fix or remove it", error)


def _classes(root: Path, count: int = 1010, classes: int = 2) -> list[Path]:
    """``count`` 3x2 gray PNGs in ``classes`` class folders under ``root``."""
    paths = []
    for index in range(count):
        folder = root / f"class_{index % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        paths.append(folder / f"{index:04d}.png")
        Image.new("L", (3, 2), 7 * (index % classes)).save(paths[-1])
    return paths


@pytest.mark.parametrize(
    ("spoil", "match"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:40]), r"cannot decode image .*0005\.png"),
        (lambda p: p.write_bytes(b"not a png"), r"cannot decode image .*0005\.png"),
        (
            lambda p: Image.fromarray(np.full((2, 3), 40000, np.uint16)).save(p),
            r"0005\.png is a I;16 image \(16-bit or float\)",
        ),
    ],
)
def test_images_that_cannot_be_read_as_8_bit_are_named(tmp_path: Path, spoil: Any, match: str):
    """A truncated file gave a bare OSError, a 16-bit scan turned white (RGB clips it)."""
    spoil(_classes(tmp_path)[5])
    with pytest.raises(ValueError, match=match):
        load_task(str(tmp_path), source="folder", split="train800val200")


def test_one_class_is_refused(tmp_path: Path):
    """One class (all labels 0, one class folder) scored test accuracy 1.0."""
    np.savez(
        tmp_path / "one.npz", images=np.zeros((1010, 3, 3), np.uint8), labels=np.zeros(1010, int)
    )
    with pytest.raises(ValueError, match="holds 1 class: a classifier needs at least 2"):
        load_task(str(tmp_path / "one.npz"), source="npz")
    _classes(tmp_path / "root", classes=1)
    with pytest.raises(ValueError, match="holds 1 class"):
        load_task(str(tmp_path / "root"), source="folder")


def _write_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as f:
        np.save(f, array)


@pytest.mark.parametrize(
    ("write", "match"),
    [
        (lambda p: p.write_text("image,label\n0,1\n"), "is not a readable .npz archive of arrays"),
        (lambda p: _write_npy(p, np.zeros((1010, 3, 3), np.uint8)), "holds one array"),
    ],
)
def test_a_file_that_is_no_npz_archive_is_named(tmp_path: Path, write: Any, match: str):
    """A CSV said to load it with allow_pickle; a .npy failed with a context-manager TypeError."""
    path = tmp_path / "data.npz"
    write(path)
    with pytest.raises(ValueError, match=match):
        load_task(str(path), source="npz")


def test_sub_folders_of_a_class_are_warned_about(tmp_path: Path, caplog: Any):
    """Images under <class>/<sub>/ were dropped without a word."""
    _classes(tmp_path)
    (tmp_path / "class_0" / "more").mkdir()
    Image.new("L", (3, 2), 0).save(tmp_path / "class_0" / "more" / "x.png")
    with caplog.at_level("WARNING", logger="experiments.data.folder"):
        load_task(str(tmp_path), source="folder", split="val200")
    assert "class_0 has sub-folders ['more']: their images are not read" in caplog.text


def test_files_not_named_as_images_are_counted(tmp_path: Path, caplog: Any):
    """.heic (Pillow cannot read it) and notes were skipped without a word; .jfif is a JPEG.
    Said once, though each split lists the folders again (a run said it three times)."""
    _classes(tmp_path)
    for name in ("a.heic", "b.heic", "notes.txt", "README"):
        (tmp_path / "class_0" / name).write_bytes(b"x")
    Image.new("RGB", (3, 2), (9, 9, 9)).save(tmp_path / "class_1" / "photo.jfif", "JPEG")
    with caplog.at_level("WARNING", logger="experiments.data.folder"):
        arrays = load_task(str(tmp_path), source="folder", split="train800val200")
        assert len(arrays) == 1000
        # 1010 PNGs and the JPEG: 11 test images
        assert len(load_task(str(tmp_path), source="folder", split="test")) == 11
    assert "4 files skipped, not named as images (.heic x2, .txt x1, README x1)" in caplog.text
    assert caplog.text.count("files skipped") == 1


def test_image_suffixes_are_matched_in_any_case(tmp_path: Path):
    """Cameras name their files IMG_0001.JPG: upper- and mixed-case suffixes are images too."""
    suffixes = (".JPG", ".PNG", ".Jpeg", ".png", ".TIF")
    every = []
    for index in range(1010):  # listing and splitting read no pixels: empty files will do
        folder = tmp_path / f"class_{index % 2}"
        folder.mkdir(exist_ok=True)
        every.append((folder / f"{index:04d}{suffixes[index % len(suffixes)]}", index % 2))
        every[-1][0].touch()
    read = []
    for split in ("train800val200", "test"):
        source, num_classes = open_folder_split(tmp_path, split, seed=0)
        read += list(zip(source.paths, source.labels.tolist(), strict=True))
    assert num_classes == 2
    assert sorted(read) == sorted(every)


def test_images_are_turned_upright_by_their_exif_orientation(tmp_path: Path):
    """A phone photo stored landscape with orientation 6 (rotate 90 degrees clockwise to view)
    is read portrait, as viewers show it."""
    paths = _classes(tmp_path)
    stored = np.zeros((2, 3, 3), np.uint8)
    stored[0, 0] = 255  # top-left pixel white
    exif = Image.Exif()
    exif[0x0112] = 6
    for path in paths:
        Image.fromarray(stored).save(path, exif=exif)
    arrays = load_task(str(tmp_path), source="folder", split="val200")
    # clockwise: the stored top-left corner ends at the top-right of a (3, 2) image
    chex.assert_shape(arrays.images, (200, 3, 2, 3))
    np.testing.assert_array_equal(arrays.images[:, 0, 1], 255)
    np.testing.assert_array_equal(arrays.images[:, 0, 0], 0)


@pytest.mark.parametrize(
    ("labels", "stored", "message"),
    [
        (np.arange(1010) % 3 + 1, {}, "classes [0] of 4 (max(labels) + 1) have no examples; "
         "labels numbered from 1? relabel them from 0"),
        (np.arange(1010) % 3, {"num_classes": 5}, "classes [3, 4] of 5 (its stored num_classes) "
         "have no examples"),
    ],
)  # fmt: skip
def test_npz_classes_without_examples_are_warned_about(
    tmp_path: Path, caplog: Any, labels: np.ndarray, stored: dict[str, int], message: str
):
    """Labels 1..N made an empty class 0 without a word; said once for the task's splits."""
    path = tmp_path / "mine.npz"
    np.savez(path, images=_tagged(1010, (3, 3)), labels=labels, **stored)
    with caplog.at_level("WARNING", logger="experiments.data.folder"):
        for split in ("val200", "train800", "test"):
            load_task(str(path), source="npz", split=split)
    assert message in caplog.text
    assert caplog.text.count("have no examples") == 1


@pytest.mark.parametrize("source", ["npz", "folder"])
def test_a_tilde_in_the_task_path_names_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
):
    """The API's load_task looked for a folder named '~' (the commands' configs expand it)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    if source == "npz":
        np.savez(tmp_path / "mine.npz", images=_tagged(1100, (3, 3)), labels=np.arange(1100) % 2)
        name = "~/mine.npz"
    else:
        for label in range(2):
            (tmp_path / "mine" / f"c{label}").mkdir(parents=True)
            Image.new("RGB", (4, 4), (label * 200, 0, 0)).save(
                tmp_path / "mine" / f"c{label}/a.png"
            )
        name = "~/mine"
    check_available(name, source=source, splits=["test"])
    if source == "npz":
        assert load_task(name, source=source, split="test").labels.shape == (100,)
    else:  # found, and too small to split
        with pytest.raises(ValueError, match="needs more than 1000 examples"):
            load_task(name, source=source, split="test")
