"""VTAB-1k from TFDS: split strings, label functions, and reads of real prepared datasets.

The datasets are genuine TFDS ArrayRecord directories written here by tfds itself (the real
builder class with tiny examples in place of the download), which works without TensorFlow
when images are given as PNG bytes. Every image encodes the index of the example that made it,
so a test can tell which example landed in which split and what its label must be.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chex
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from experiments.config import override
from experiments.configs import paper
from experiments.data import DataNotFoundError, load_task
from experiments.data.vtab import (
    VTAB_TASKS,
    TfdsSource,
    binned_label,
    clevr_count,
    clevr_distance,
    kitti_closest_vehicle,
    open_vtab_split,
    tfds_splits,
)
from experiments.pipeline import load_split

# (min depth of the scene, clevr_dist label): label = last i with thresholds[i] < depth for
# thresholds 0, 8, 8.5, 9, 9.5, 10, 100 -- worked out by hand, boundaries included.
CLEVR_DEPTHS = [
    (7.5, 0),
    (8.0, 0),
    (8.25, 1),
    (8.5, 1),
    (8.75, 2),
    (9.25, 3),
    (9.75, 4),
    (10.0, 4),
    (12.0, 5),
    (99.5, 5),
]
# (object types, object depths, kitti label): vehicles are types 0, 1, 2; thresholds -100, 8,
# 20, 999 on the closest vehicle's depth, 1000 when there is none.
KITTI_SCENES = [
    ([0], [5.0], 0),
    ([1], [8.0], 0),
    ([2], [8.5], 1),
    ([0, 1], [30.0, 19.5], 1),
    ([3, 0], [2.0, 25.0], 2),
    ([4, 7], [3.0, 4.0], 3),
    ([], [], 3),
    ([2], [20.0], 1),
    ([0], [998.0], 2),
]


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(buffer, "PNG")
    return buffer.getvalue()


def _tagged(index: int, shape: tuple[int, int, int]) -> np.ndarray:
    """An image whose first two pixels hold index % 256 and index // 256."""
    image = np.zeros(shape, np.uint8)
    image[0, 0, 0], image[0, 1, 0] = index % 256, index // 256
    return image


def _tag(image: np.ndarray) -> int:
    return int(image[0, 0, 0]) + 256 * int(image[0, 1, 0])


def _bits(index: int) -> np.ndarray:
    """A 0/1 dsprites-like 64x64x1 image with the bits of index in its first row."""
    image = np.zeros((64, 64, 1), np.uint8)
    image[0, :16, 0] = [(index >> bit) & 1 for bit in range(16)]
    return image


def _unbits(image: np.ndarray) -> int:
    return sum(int(image[0, bit, 0] > 0) << bit for bit in range(16))


def _prepare(data_dir: Path, name: str, splits: dict[str, list[dict[str, Any]]], **kwargs: Any):
    dataset_name = name
    real_builder: Any = tfds.builder_cls(name)

    class Tiny(real_builder, skip_registration=True):  # type: ignore[call-arg]
        name = dataset_name

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(rows) for split, rows in splits.items()}

        def _generate_examples(self, rows):
            yield from enumerate(rows)

    builder = Tiny(data_dir=data_dir, file_format="array_record", **kwargs)
    config = tfds.download.DownloadConfig(  # never fetch the real dataset from GCS instead
        try_download_gcs=False, compute_stats=tfds.download.ComputeStatsMode.SKIP
    )
    builder.download_and_prepare(download_config=config)


def _cifar(i: int) -> dict[str, Any]:
    return {
        "id": f"x{i}",
        "image": _png(_tagged(i, (2, 2, 3))),
        "label": i % 100,
        "coarse_label": i % 20,
    }


def _dsprites(i: int) -> dict[str, Any]:
    labels = {
        "label_orientation": i % 40,
        "label_scale": 0,
        "label_shape": 0,
        "label_x_position": i % 32,
        "label_y_position": 0,
    }
    values = {key.replace("label", "value"): 0.0 for key in labels}
    return {"image": _png(_bits(i)), **labels, **values}


def _smallnorb(i: int) -> dict[str, Any]:
    image = _png(_tagged(i, (96, 96, 1)))
    return {
        "image": image,
        "image2": image,
        "instance": 0,
        "label_azimuth": i % 18,
        "label_category": 0,
        "label_elevation": i % 9,
        "label_lighting": 0,
    }


def _clevr(i: int) -> dict[str, Any]:
    count, depth = 3 + i % 8, CLEVR_DEPTHS[i % len(CLEVR_DEPTHS)][0]
    depths = [depth + 1.0 + j for j in range(count - 1)] + [depth]  # the closest one last
    objects = [
        {
            "3d_coords": [0.0, 0.0, 0.0],
            "color": 0,
            "material": 0,
            "pixel_coords": [1.0, 2.0, z],
            "rotation": 0.0,
            "shape": 0,
            "size": 0,
        }
        for z in depths
    ]
    return {
        "file_name": f"{i}.png",
        "image": _png(_tagged(i, (2, 2, 3))),
        "objects": objects,
        "question_answer": [],
    }


def _kitti(i: int) -> dict[str, Any]:
    types, depths, _ = KITTI_SCENES[i % len(KITTI_SCENES)]
    objects = [
        {
            "alpha": 0.0,
            "bbox": tfds.features.BBox(0.1, 0.1, 0.5, 0.5),
            "dimensions": [1.0, 1.0, 1.0],
            "location": [0.5, 1.0, z],
            "occluded": 0,
            "rotation_y": 0.0,
            "truncated": 0.0,
            "type": t,
        }
        for t, z in zip(types, depths, strict=True)
    ]
    return {"image": _png(_tagged(i, (2, 2, 3))), "image/file_name": f"{i}.png", "objects": objects}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tfds")
    _prepare(
        root,
        "cifar100",
        {"train": [_cifar(i) for i in range(2000)], "test": [_cifar(i) for i in range(2000, 2030)]},
    )
    _prepare(root, "dsprites", {"train": [_dsprites(i) for i in range(2000)]})
    _prepare(
        root,
        "smallnorb",
        {
            "train": [_smallnorb(i) for i in range(800)],
            "test": [_smallnorb(i) for i in range(800, 1200)],
        },
    )
    _prepare(
        root,
        "clevr",
        {
            "train": [_clevr(i) for i in range(2000)],
            "validation": [_clevr(i) for i in range(2000, 2030)],
            "test": [_clevr(i) for i in range(2030, 2035)],
        },
    )
    _prepare(
        root,
        "kitti",
        {
            "train": [_kitti(i) for i in range(800)],
            "validation": [_kitti(i) for i in range(800, 1000)],
            "test": [_kitti(i) for i in range(1000, 1020)],
        },
    )
    return root


# tfds 4.9 can no longer generate kitti 3.1.0 (the pinned version), only 3.3.0.
_VERSIONS = {"kitti": "3.3.0"}


@functools.cache
def _reference_order(root: Path, tfds_name: str, split: str, decode: Callable) -> list[int]:
    """Example indices of a whole TFDS split in stored order, read by tfds directly."""
    records = tfds.data_source(tfds_name, split=split, data_dir=root, download=False)
    return [decode(np.asarray(record["image"])) for record in records]


# task, hand-computed label of example i, tag decoder, dataset splits -> expected index ranges
_CASES = {
    "cifar": (
        lambda i: i % 100,
        _tag,
        {
            "train800": [("train", 0, 800)],
            "val200": [("train", 1800, 2000)],
            "test": [("test", 0, 30)],
        },
    ),
    "dsprites_loc": (
        lambda i: (i % 32) // 2,
        _unbits,
        {
            "train800": [("train", 0, 800)],
            "val200": [("train", 1600, 1800)],
            "test": [("train", 1800, 2000)],
        },
    ),
    "dsprites_ori": (
        lambda i: 2 * (i % 40) // 5,
        _unbits,
        {"val200": [("train", 1600, 1800)], "test": [("train", 1800, 2000)]},
    ),
    "smallnorb_azi": (
        lambda i: i % 18,
        _tag,
        {"train800val200": [("train", 0, 800), ("test", 0, 200)], "test": [("test", 200, 400)]},
    ),
    "smallnorb_ele": (lambda i: i % 9, _tag, {"val200": [("test", 0, 200)]}),
    "clevr_count": (
        lambda i: i % 8,
        _tag,
        {
            "train800val200": [("train", 0, 800), ("train", 1800, 2000)],
            "test": [("validation", 0, 30)],
        },
    ),
    "clevr_dist": (
        lambda i: CLEVR_DEPTHS[i % len(CLEVR_DEPTHS)][1],
        _tag,
        {"val200": [("train", 1800, 2000)]},
    ),
    "kitti": (
        lambda i: KITTI_SCENES[i % len(KITTI_SCENES)][2],
        _tag,
        {
            "train800": [("train", 0, 800)],
            "val200": [("validation", 0, 200)],
            "test": [("test", 0, 20)],
        },
    ),
}


@pytest.mark.parametrize(
    ("task", "split"), [(task, split) for task, case in _CASES.items() for split in case[2]]
)
def test_split_holds_the_expected_examples_and_labels(tfds_dir: Path, task: str, split: str):
    label_of, decode, parts_of_split = _CASES[task]
    version = _VERSIONS.get(task)
    tfds_name = f"{VTAB_TASKS[task].builder}:{version or VTAB_TASKS[task].version}"
    expected = [
        index
        for part, start, stop in parts_of_split[split]
        for index in _reference_order(tfds_dir, tfds_name, part, decode)[start:stop]
    ]
    arrays = load_task(
        task, source="tfds", split=split, data_dir=tfds_dir, version=version, num_workers=3
    )
    assert arrays.images.dtype == np.uint8 and arrays.images.shape[-1] == 3
    assert [decode(image) for image in arrays.images] == expected
    np.testing.assert_array_equal(arrays.labels, [label_of(i) for i in expected])
    assert arrays.num_classes == VTAB_TASKS[task].num_classes


def test_grey_images_become_rgb_and_dsprites_pixels_255(tfds_dir: Path):
    arrays = load_task("dsprites_loc", source="tfds", split="val200", data_dir=tfds_dir)
    chex.assert_shape(arrays.images, (200, 64, 64, 3))
    assert set(np.unique(arrays.images)) <= {0, 255}
    np.testing.assert_array_equal(arrays.images[..., 0], arrays.images[..., 2])


def test_resize_normalise_and_cache(tfds_dir: Path, tmp_path: Path):
    kwargs: dict[str, Any] = {
        "source": "tfds",
        "split": "val200",
        "data_dir": tfds_dir,
        "image_size": 8,
        "cache_dir": tmp_path,
    }
    first = load_task("cifar", **kwargs)
    chex.assert_shape(first.images, (200, 8, 8, 3))
    assert len(list(tmp_path.glob("*.images.npy"))) == 1
    again = load_task("cifar", **kwargs)
    assert isinstance(again.images, np.memmap)
    np.testing.assert_array_equal(again.images, first.images)
    normalised = load_task("cifar", **kwargs, normalization="minus1_1")
    chex.assert_trees_all_close(normalised.images, first.images / 127.5 - 1.0, atol=1e-6)


def test_a_rebuilt_dataset_is_not_read_from_the_old_cache(tmp_path: Path):
    """The cache key holds the prepared version's files: rebuilding the data in place (or a
    newer version appearing) reads the new records, not the arrays cached from the old ones."""
    data, cache = tmp_path / "tfds", tmp_path / "cache"
    rows = {"train": [_cifar(i) for i in range(2000)], "test": [_cifar(i) for i in range(30)]}
    _prepare(data, "cifar100", rows)
    kwargs: dict[str, Any] = {"source": "tfds", "split": "val200", "data_dir": data}
    first = load_task("cifar", **kwargs, cache_dir=cache)
    shutil.rmtree(data / "cifar100")
    relabelled = [{**row, "label": (row["label"] + 7) % 100} for row in rows["train"]]
    _prepare(data, "cifar100", {**rows, "train": relabelled})
    again = load_task("cifar", **kwargs, cache_dir=cache)
    np.testing.assert_array_equal(again.labels, (first.labels + 7) % 100)
    np.testing.assert_array_equal(again.labels, load_task("cifar", **kwargs).labels)


# Real TFDS split sizes; every string below was computed by hand from them.
_REAL_SPLITS = {
    "cifar": (50000, "train[45000:45200]", "test"),
    "caltech101": (3060, "train[2754:2954]", "test"),
    "oxford_iiit_pet": (3680, "train[2944:3144]", "test"),
    "svhn": (73257, "train[65931:66131]", "test"),
    "eurosat": (27000, "train[16200:16400]", "train[21600:]"),
    "resisc45": (31500, "train[18900:19100]", "train[25200:]"),
    "clevr_count": (70000, "train[63000:63200]", "validation"),
    "clevr_dist": (70000, "train[63000:63200]", "validation"),
    "dsprites_loc": (737280, "train[589824:590024]", "train[663552:]"),
    "dsprites_ori": (737280, "train[589824:590024]", "train[663552:]"),
    "smallnorb_azi": (24300, "test[:200]", "test[50%:]"),
    "smallnorb_ele": (24300, "test[:200]", "test[50%:]"),
    "dtd": (1880, "validation[:200]", "test"),
    "oxford_flowers102": (1020, "validation[:200]", "test"),
    "sun397": (76128, "validation[:200]", "test"),
    "patch_camelyon": (262144, "validation[:200]", "test"),
    "diabetic_retinopathy": (35126, "validation[:200]", "test"),
    "dmlab": (65550, "validation[:200]", "test"),
    "kitti": (6347, "validation[:200]", "test"),
}


def test_every_task_has_split_strings():
    assert set(_REAL_SPLITS) == set(VTAB_TASKS)


@pytest.mark.parametrize("task", sorted(_REAL_SPLITS))
def test_split_strings_from_real_sizes(task: str):
    num_train, val, test = _REAL_SPLITS[task]
    assert tfds_splits(VTAB_TASKS[task], num_train) == {
        "train800": "train[:800]",
        "val200": val,
        "train800val200": f"train[:800]+{val}",
        "test": test,
    }


@pytest.mark.parametrize(("task", "num_train", "test"), [
    ("eurosat", 1004, "train[802:]"),  # 602 + 200: each percentage floored on its own
    ("resisc45", 1003, "train[801:]"),  # 601 + 200
    ("dsprites_loc", 1006, "train[904:]"),  # 804 + 100
])  # fmt: skip
def test_held_out_test_starts_after_each_floored_percentage(task: str, num_train: int, test: str):
    """task_adaptation's split: train[pT*N//100 + pV*N//100:], not train[(pT + pV)*N//100:]."""
    assert tfds_splits(VTAB_TASKS[task], num_train)["test"] == test


@pytest.mark.parametrize(
    ("task", "num_train"),
    [("cifar", 1004), ("oxford_iiit_pet", 1002), ("eurosat", 1003), ("dsprites_ori", 1007)],
)
def test_validation_from_train_starts_at_the_floored_percentage(task: str, num_train: int):
    """val200 = train[pT*N//100 : +200]: floored, also where pT*N/100 lies nearer the ceiling."""
    percent = VTAB_TASKS[task].train_percent
    assert percent is not None and (percent * num_train) % 100 > 50  # round() would differ
    start = percent * num_train // 100
    assert tfds_splits(VTAB_TASKS[task], num_train)["val200"] == f"train[{start}:{start + 200}]"


@pytest.mark.parametrize(("depth", "label"), CLEVR_DEPTHS)
def test_clevr_distance_by_hand(depth: float, label: int):
    coords = np.array([[0.0, 0.0, depth + 3.0], [0.0, 0.0, depth]], np.float32)
    assert clevr_distance({"objects": {"pixel_coords": coords}}) == label


@pytest.mark.parametrize("count", range(3, 11))
def test_clevr_count_by_hand(count: int):
    assert clevr_count({"objects": {"size": np.zeros(count, np.int64)}}) == count - 3


@pytest.mark.parametrize(("types", "depths", "label"), KITTI_SCENES)
def test_kitti_closest_vehicle_by_hand(types: list[int], depths: list[float], label: int):
    location = np.array([[0.0, 0.0, z] for z in depths], np.float32).reshape(-1, 3)
    objects = {"type": np.array(types, np.int64), "location": location}
    assert kitti_closest_vehicle({"objects": objects}) == label


@pytest.mark.parametrize(
    ("value", "num_original", "label"),
    [
        (0, 32, 0),
        (1, 32, 0),
        (2, 32, 1),
        (31, 32, 15),
        (0, 40, 0),
        (2, 40, 0),
        (3, 40, 1),
        (5, 40, 2),
        (7, 40, 2),
        (8, 40, 3),
        (37, 40, 14),
        (38, 40, 15),
        (39, 40, 15),
    ],
)
def test_dsprites_bins_by_hand(value: int, num_original: int, label: int):
    example = {"key": np.int64(value)}
    assert binned_label(example, key="key", num_original=num_original, num_classes=16) == label


class _Records(list):
    """A stand-in for a tfds data source: random access by a list of indices."""

    def __getitems__(self, indices: list[int]) -> list[Any]:
        return [self[i] for i in indices]


@pytest.mark.parametrize(("task", "pixel", "refused"), [
    ("dsprites_loc", 0, False), ("dsprites_loc", 1, False), ("dsprites_ori", 255, True),
    ("cifar", 255, False),
])  # fmt: skip
def test_only_dsprites_pixels_are_scaled_and_must_be_0_or_1(task: str, pixel: int, refused: bool):
    image = np.zeros((4, 4, 1), np.uint8)
    image[1, 2] = pixel
    records = _Records([{"image": image, "label": 0, "label_x_position": 0,
                         "label_orientation": 0}])  # fmt: skip
    source = TfdsSource(records, VTAB_TASKS[task], Path())
    scale = VTAB_TASKS[task].pixel_scale
    if refused:
        with pytest.raises(ValueError, match=f"{task}: expected 0/1 pixels, found {pixel}"):
            source.read([0])
        return
    ((got, label),) = source.read([0])
    np.testing.assert_array_equal(got, image.astype(np.int64) * scale)
    assert label == 0


@pytest.mark.parametrize(
    ("task", "objects", "match"),
    [
        (
            "clevr_dist",
            {"pixel_coords": np.zeros((0, 3), np.float32)},
            r"^clevr_dist needs at least one object \(pixel_coords is empty\)$",
        ),
        (  # depth 0 is not beyond clevr_dist's first threshold (0)
            "clevr_dist",
            {"pixel_coords": np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 0.0]], np.float32)},
            r"^value 0.0 is not above the first threshold 0.0$",
        ),
        (  # a vehicle at -100 m is not beyond kitti's first threshold (-100)
            "kitti",
            {"type": np.array([3, 0]), "location": np.array([[0, 0, -200], [0, 0, -100]], float)},
            r"^value -100.0 is not above the first threshold -100.0$",
        ),
    ],
    ids=["clevr-no-object", "clevr-depth-0", "kitti-vehicle-at-minus-100"],
)
def test_labels_of_impossible_scenes_are_refused(task: str, objects: dict, match: str):
    records = _Records([{"image": np.zeros((2, 2, 3), np.uint8), "objects": objects}])
    with pytest.raises(ValueError, match=match):
        TfdsSource(records, VTAB_TASKS[task], Path()).read([0])


@pytest.mark.parametrize(
    ("task", "change", "match"),
    [
        ("cifar", {"train_percent": None}, r"^cifar: val_from='train' needs train_percent$"),
        (
            "eurosat",
            {"val_from": "validation", "train_percent": None},
            r"^eurosat: val_percent needs train_percent$",
        ),
    ],
    ids=["val-from-train", "val-percent"],
)
def test_split_rules_from_train_need_its_percentage(task: str, change: dict, match: str):
    with pytest.raises(ValueError, match=match):
        tfds_splits(dataclasses.replace(VTAB_TASKS[task], **change), 2000)


def test_a_prepared_train_split_too_small_for_vtab1k_is_named(tmp_path: Path):
    """tfds refuses a slice past the split's end (train[:800] of 500 examples), so a split
    string never yields fewer examples than VTAB-1k's sizes: open_vtab_split counts on it."""
    _prepare(tmp_path, "cifar100", {"train": [_cifar(i) for i in range(500)]})
    for split in ("train800", "val200"):  # train[:800], train[450:650]
        named = rf"cifar100:3\.\*\.\* at .* cannot give VTAB-1k's {split}: .*\{{'train': 500\}}\)$"
        with pytest.raises(DataNotFoundError, match=named):
            open_vtab_split("cifar", split, data_dir=tmp_path)


def test_missing_dataset_says_what_to_build_and_where(tmp_path: Path):
    with pytest.raises(DataNotFoundError) as error:
        open_vtab_split("cifar", "train800", data_dir=tmp_path)
    message = str(error.value)
    assert "cifar100:3.*.*" in message and "tfds build cifar100" in message
    assert str(tmp_path) in message and "internet" in message


def test_a_split_the_prepared_copy_lacks_is_named(tmp_path: Path):
    _prepare(tmp_path, "cifar100", {"train": [_cifar(i) for i in range(2000)]})
    named = r"cifar100:3\.\*\.\* at .* cannot give VTAB-1k's test: .*\{'train': 2000\}\)"
    with pytest.raises(DataNotFoundError, match=named):
        open_vtab_split("cifar", "test", data_dir=tmp_path)


def test_missing_dataset_uses_tfds_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(DataNotFoundError, match="dsprites:2"):
        open_vtab_split("dsprites_ori", "test")
    with pytest.raises(DataNotFoundError, match=str(tmp_path)):
        open_vtab_split("dsprites_ori", "test")


def test_without_a_data_dir_the_home_folders_tensorflow_datasets_is_read(
    tfds_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # where Path.home() looks
    (tmp_path / "tensorflow_datasets").symlink_to(tfds_dir)
    source = open_vtab_split("cifar", "val200")
    assert source.version_dir == tmp_path / "tensorflow_datasets" / "cifar100" / "3.0.2"
    want = open_vtab_split("cifar", "val200", data_dir=tfds_dir)
    assert [_tag(image) for image, _ in source.read(range(200))] == [
        _tag(image) for image, _ in want.read(range(200))
    ]


def test_a_bucket_url_for_the_data_is_refused(monkeypatch: pytest.MonkeyPatch):
    # pathlib would read gs://bucket/tfds as the local folder gs:/bucket/tfds
    with pytest.raises(ValueError, match="data_dir 'gs://bucket/tfds' is a URL.*gcsfuse"):
        open_vtab_split("dsprites_ori", "test", data_dir="gs://bucket/tfds")
    monkeypatch.setenv("TFDS_DATA_DIR", "gs://bucket/tfds")
    with pytest.raises(ValueError, match=r"\$TFDS_DATA_DIR 'gs://bucket/tfds' is a URL"):
        open_vtab_split("dsprites_ori", "test")


def test_manual_datasets_say_so(tmp_path: Path):
    for task in ("resisc45", "diabetic_retinopathy"):
        with pytest.raises(DataNotFoundError, match="manual download"):
            open_vtab_split(task, "val200", data_dir=tmp_path)


@pytest.mark.parametrize(
    ("task", "pinned", "buildable"),
    [("oxford_iiit_pet", "3.*.*", "4.0.0"), ("kitti", "3.1.0", "3.3.0")],
)
def test_versions_tfds_cannot_build_are_named(
    tmp_path: Path, task: str, pinned: str, buildable: str
):
    with pytest.raises(DataNotFoundError) as error:
        open_vtab_split(task, "test", data_dir=tmp_path)
    assert f"builds only {VTAB_TASKS[task].builder}:{buildable}, not {pinned}" in str(error.value)
    assert f"version='{buildable}'" in str(error.value)
    assert f"--set data.version={buildable}" in str(error.value)


def test_the_cli_config_passes_a_tfds_version(tfds_dir: Path):
    config = override(
        paper("kitti"), [f"data.data_dir={tfds_dir}", f"data.version={_VERSIONS['kitti']}"]
    )
    got = load_split(config, "val200")
    want = load_task(
        "kitti", split="val200", data_dir=tfds_dir, version=_VERSIONS["kitti"], image_size=224
    )
    np.testing.assert_array_equal(got.labels, want.labels)
    np.testing.assert_array_equal(got.images, want.images)
    with pytest.raises(DataNotFoundError, match="kitti:3.1.0"):
        load_split(override(config, ["data.version=none"]), "val200")


def test_kitti_at_the_pinned_version_is_not_read_from_another(tfds_dir: Path):
    with pytest.raises(DataNotFoundError, match="kitti:3.1.0"):
        open_vtab_split("kitti", "train800", data_dir=tfds_dir)


def test_tfrecord_datasets_are_refused_with_a_conversion_hint(tfds_dir: Path, tmp_path: Path):
    version_dir = tmp_path / "cifar100" / "3.0.2"
    shutil.copytree(tfds_dir / "cifar100" / "3.0.2", version_dir)
    info_path = version_dir / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "fileFormat": "tfrecord"}))
    with pytest.raises(DataNotFoundError, match="convert_format"):
        open_vtab_split("cifar", "val200", data_dir=tmp_path)


def test_unknown_task_and_split_are_errors(tfds_dir: Path):
    with pytest.raises(ValueError, match="unknown VTAB-1k task"):
        open_vtab_split("cifar10", "test", data_dir=tfds_dir)
    with pytest.raises(ValueError, match="unknown split"):
        open_vtab_split("cifar", "16shot", data_dir=tfds_dir)
    with pytest.raises(ValueError, match="fixed splits"):
        load_task("cifar", source="tfds", data_dir=tfds_dir, seed=1)
    with pytest.raises(ValueError, match=r"^unknown source 'tfsd'; expected one of \('tfds', "):
        load_task("cifar", source="tfsd", data_dir=tfds_dir)  # type: ignore[arg-type]
