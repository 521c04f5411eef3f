"""Preprocessing (grey -> RGB, bicubic resize, normalisation), split values, materialising."""

from __future__ import annotations

from pathlib import Path

import chex
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from experiments.data import load_task
from experiments.data.base import ArraySource, ImageFileSource, SplitArrays, check_labels
from experiments.data.materialize import materialize, materialize_cached
from experiments.data.preprocess import normalize, resize_bicubic, to_rgb

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


@pytest.mark.parametrize("as_jax", [False, True])
@pytest.mark.parametrize(
    ("normalization", "reference"),
    [
        ("imagenet", lambda x: (x / 255.0 - IMAGENET_MEAN) / IMAGENET_STD),
        ("minus1_1", lambda x: x / 127.5 - 1.0),
    ],
)
def test_normalize_matches_the_formula(normalization, reference, as_jax: bool):
    images = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 3), dtype=np.uint8)
    out = normalize(jnp.asarray(images) if as_jax else images, normalization)
    assert out.dtype == np.float32
    chex.assert_trees_all_close(np.asarray(out), reference(images.astype(np.float64)), atol=1e-5)


def test_normalize_rejects_floats_and_unknown_names():
    with pytest.raises(ValueError, match="uint8"):
        normalize(np.zeros((1, 2, 2, 3), np.float32), "imagenet")
    with pytest.raises(ValueError, match="unknown normalization"):
        normalize(np.zeros((1, 2, 2, 3), np.uint8), "zero_one")  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 1), (4, 5, 3)])
def test_to_rgb(shape: tuple[int, ...]):
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    rgb = to_rgb(image)
    chex.assert_shape(rgb, (4, 5, 3))
    grey = image.reshape(4, 5, -1)
    np.testing.assert_array_equal(rgb, np.broadcast_to(grey, (4, 5, 3)))


@pytest.mark.parametrize(
    ("image", "match"),
    [(np.zeros((4, 5, 2), np.uint8), "image"), (np.zeros((4, 5), np.float32), "uint8")],
)
def test_to_rgb_errors(image: np.ndarray, match: str):
    with pytest.raises(ValueError, match=match):
        to_rgb(image)


def test_resize_is_pil_bicubic():
    image = np.random.default_rng(2).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    resized = resize_bicubic(image, 16)
    pil = Image.fromarray(image)
    np.testing.assert_array_equal(resized, np.asarray(pil.resize((16, 16), Image.BICUBIC)))
    assert not np.array_equal(resized, np.asarray(pil.resize((16, 16), Image.BILINEAR)))
    np.testing.assert_array_equal(resize_bicubic(np.full((3, 8, 3), 77, np.uint8), 5), 77)
    np.testing.assert_array_equal(resize_bicubic(image[:7, :7], 7), image[:7, :7])


@pytest.mark.parametrize("shape", [(6, 9, 3), (9, 6, 3), (4, 5, 3), (6, 6, 3)])
def test_resize_makes_a_square_whichever_side_has_the_size(shape: tuple[int, int, int]):
    """Aspect ratio not kept: a (6, 9) image resized to 6 becomes (6, 6), as PIL resizes it."""
    image = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    resized = resize_bicubic(image, 6)
    chex.assert_shape(resized, (6, 6, 3))
    pil = Image.fromarray(image).resize((6, 6), Image.Resampling.BICUBIC)
    np.testing.assert_array_equal(resized, np.asarray(pil))


def test_split_arrays_validate():
    images = np.zeros((3, 2, 2, 3), np.uint8)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        SplitArrays(images, np.array([0, 1, 2], np.int32), num_classes=2, name="t", split="s")
    with pytest.raises(ValueError, match="int32"):
        SplitArrays(images, np.array([0, 1, 1]), num_classes=2, name="t", split="s")
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        SplitArrays(images[..., 0], np.zeros(3, np.int32), num_classes=2, name="t", split="s")


@pytest.mark.parametrize(
    ("labels", "shape"),
    [(np.zeros(3, int), r"\(3,\)"), (np.zeros((2, 1), int), r"\(2, 1\)")],
    ids=["3-labels", "2x1-labels"],
)
def test_an_image_file_source_takes_one_label_per_path(
    tmp_path: Path, labels: np.ndarray, shape: str
):
    paths = (tmp_path / "a.png", tmp_path / "b.png")
    assert len(ImageFileSource(paths, np.zeros(2, int))) == 2
    with pytest.raises(ValueError, match=f"^2 paths but labels of shape {shape}$"):
        ImageFileSource(paths, labels)


@pytest.mark.parametrize("channels", [1, 4])
def test_split_arrays_refuse_images_of_other_than_3_channels(channels: int):
    images = np.zeros((3, 2, 2, channels), np.uint8)
    with pytest.raises(ValueError, match=r"t/s: images must be \(N, H, W, 3\)"):
        SplitArrays(images, np.zeros(3, np.int32), num_classes=2, name="t", split="s")


@pytest.mark.parametrize(
    ("labels", "refused"),
    [([0, 1, 1], False), ([1, 1], False), ([], False), ([0, 2], True), ([-1, 0, 1], True),
     ([-3], True)],
)  # fmt: skip
def test_check_labels_refuses_exactly_the_labels_outside_the_classes(
    labels: list[int], refused: bool
):
    array = np.asarray(labels, np.int32)
    if refused:
        with pytest.raises(ValueError, match=r"^where: labels must lie in \[0, 2\)"):
            check_labels(array, 2, where="where")
    else:
        check_labels(array, 2, where="where")


def _source(count: int) -> ArraySource:
    rng = np.random.default_rng(count)
    return ArraySource(rng.integers(0, 256, (count, 6, 5), dtype=np.uint8), np.arange(count) % 3)


def test_materialize_matches_per_image_preprocessing():
    source = _source(300)  # more than one chunk of work
    images, labels = materialize(source, image_size=4, num_workers=3)
    expected = np.stack([resize_bicubic(to_rgb(image), 4) for image in source.images])
    np.testing.assert_array_equal(images, expected)
    np.testing.assert_array_equal(labels, source.labels)
    assert labels.dtype == np.int32


@pytest.mark.parametrize("source", ["npz", "folder"])
def test_cache_misses_when_the_users_files_are_rewritten(tmp_path: Path, source: str):
    def write(value: int) -> str:
        images = np.full((1010, 4, 4, 3), value, np.uint8)
        labels = np.arange(1010) % 2
        if source == "npz":
            np.savez(tmp_path / "data.npz", images=images, labels=labels)
            return str(tmp_path / "data.npz")
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            (tmp_path / "tree" / str(label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(tmp_path / "tree" / str(label) / f"{index}.png")
        return str(tmp_path / "tree")

    cache = tmp_path / "cache"
    before = load_task(write(7), source=source, split="val200", cache_dir=cache)
    after = load_task(write(9), source=source, split="val200", cache_dir=cache)  # same names, sizes
    assert int(before.images.max()) == 7 and int(after.images.max()) == 9
    assert len(list(cache.glob("*.labels.npy"))) == 2


def test_cache_is_reused_and_checked(tmp_path: Path):
    source = _source(20)
    key = {"name": "x"}
    first, _ = materialize_cached(source, key=key, cache_dir=tmp_path, image_size=None)
    assert not list(tmp_path.glob("*partial*")) and len(list(tmp_path.glob("*.json"))) == 1
    again, labels = materialize_cached(source, key=key, cache_dir=tmp_path, image_size=None)
    assert isinstance(again, np.memmap)
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(labels, source.labels)
    with pytest.raises(ValueError, match="the data changed"):
        materialize_cached(_source(21), key=key, cache_dir=tmp_path, image_size=None)
    other, _ = materialize_cached(source, key=key, cache_dir=tmp_path, image_size=3)
    chex.assert_shape(other, (20, 3, 3, 3))


def test_a_cache_entry_without_its_labels_file_is_rebuilt(tmp_path: Path):
    """The labels file is written last and marks a complete entry: after a crash that left
    only the images file, the next load decodes the split again."""
    source = _source(20)
    materialize_cached(source, key={"name": "x"}, cache_dir=tmp_path, image_size=None)
    (labels_file,) = tmp_path.glob("*.labels.npy")
    labels_file.unlink()
    images, labels = materialize_cached(source, key={"name": "x"}, cache_dir=tmp_path,
                                        image_size=None)  # fmt: skip
    np.testing.assert_array_equal(images, np.stack([to_rgb(i) for i in source.images]))
    np.testing.assert_array_equal(labels, source.labels)
    assert labels_file.is_file()


def test_an_empty_split_is_named():
    source = ArraySource(np.zeros((0, 4, 4), np.uint8), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="the split is empty"):
        materialize(source, image_size=None)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"split": "val200", "seed": 1}, {"split": "val200", "seed": 2}),
        ({"split": "val200", "seed": 1}, {"split": "train800", "seed": 1}),
    ],
    ids=["seed", "split"],
)
def test_cache_entries_of_other_splits_and_seeds_are_apart(tmp_path: Path, first, second):
    """One cache folder for every load: each (split, seed) reads its own examples."""
    count = 1010
    tags = np.arange(count)
    images = np.zeros((count, 2, 2), np.uint8)
    images[:, 0, 0], images[:, 0, 1] = tags % 256, tags // 256
    np.savez(tmp_path / "data.npz", images=images, labels=tags % 2)
    for kwargs in (first, second):
        arrays = load_task(
            str(tmp_path / "data.npz"), source="npz", cache_dir=tmp_path / "cache", **kwargs
        )
        permutation = np.random.default_rng(kwargs["seed"]).permutation(count)
        want = {"train800": permutation[:800], "val200": permutation[800:1000]}[kwargs["split"]]
        got = arrays.images[:, 0, 0, 0] + 256 * arrays.images[:, 0, 1, 0].astype(int)
        np.testing.assert_array_equal(got, want)
