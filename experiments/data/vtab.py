"""The 19 VTAB-1k tasks read from prepared TFDS datasets (ArrayRecord, no TensorFlow needed).

Splits and labels follow google-research/task_adaptation (task_adaptation/data/*.py). With
N = the number of examples in the builder's ``train`` split:

    train800       = train[:800]
    val200         = train[T:T+200], T = train_percent * N // 100    (val_from == "train")
                     or <val_from>[:200]                              (validation / test)
    train800val200 = train800 + val200
    test           = train[T+V:], V = val_percent * N // 100          (when val_percent is set)
                     or the task's ``test`` split string

The split strings are computed from the prepared dataset's own split sizes (``tfds_splits``).
Images are decoded by tfds' numpy path (PIL when OpenCV is absent); no TensorFlow is imported.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from experiments.data.base import DataNotFoundError, Example
from experiments.data.splits import TRAIN_SIZE, VAL_SIZE, check_vtab1k_split
from experiments.local_files import local_path

log = logging.getLogger(__name__)

LabelFn = Callable[[Mapping[str, Any]], int]

#: clevr_dist: label = the last i with thresholds[i] < min_z (task_adaptation's buckets).
CLEVR_DISTANCE_THRESHOLDS = np.array([0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0])
#: kitti: the same rule on the closest vehicle's depth (1000 m when there is no vehicle).
KITTI_DISTANCE_THRESHOLDS = np.array([-100.0, 8.0, 20.0, 999.0])
#: kitti object types counted as vehicles: Car, Van, Truck.
KITTI_VEHICLE_TYPES = 3
KITTI_NO_VEHICLE_DISTANCE = 1000.0


def class_label(example: Mapping[str, Any], *, key: str = "label") -> int:
    """The dataset's own class label feature."""
    return int(example[key])


def clevr_count(example: Mapping[str, Any]) -> int:
    """Number of objects minus 3 (CLEVR scenes hold 3 to 10 objects -> 8 classes)."""
    return int(np.asarray(example["objects"]["size"]).shape[0]) - 3


def clevr_distance(example: Mapping[str, Any]) -> int:
    """Bucket of the closest object's depth, min(objects.pixel_coords[:, 2])."""
    depth = np.asarray(example["objects"]["pixel_coords"], np.float32).reshape(-1, 3)[:, 2]
    if depth.size == 0:
        raise ValueError("clevr_dist needs at least one object (pixel_coords is empty)")
    return threshold_bucket(float(depth.min()), CLEVR_DISTANCE_THRESHOLDS)


def kitti_closest_vehicle(example: Mapping[str, Any]) -> int:
    """Bucket of the closest vehicle's depth (objects.location[:, 2] where type < 3)."""
    objects = example["objects"]
    is_vehicle = np.asarray(objects["type"]) < KITTI_VEHICLE_TYPES
    depth = np.asarray(objects["location"], np.float32).reshape(-1, 3)[is_vehicle, 2]
    closest = float(np.min(depth, initial=KITTI_NO_VEHICLE_DISTANCE))
    return threshold_bucket(closest, KITTI_DISTANCE_THRESHOLDS)


def threshold_bucket(value: float, thresholds: np.ndarray) -> int:
    """max{i : thresholds[i] < value}, task_adaptation's ``reduce_max(where(thrs - v < 0))``."""
    below = np.flatnonzero(thresholds < value)
    if below.size == 0:
        raise ValueError(f"value {value} is not above the first threshold {thresholds[0]}")
    return int(below.max())


def binned_label(
    example: Mapping[str, Any], *, key: str, num_original: int, num_classes: int
) -> int:
    """floor(v / (num_original / num_classes)) in float32, as task_adaptation's dsprites does."""
    factor = np.float32(num_original) / np.float32(num_classes)
    return int(np.floor(np.float32(example[key]) / factor))


@dataclasses.dataclass(frozen=True)
class VtabTask:
    """How one VTAB-1k task is read from TFDS (see the module docstring for the split rules)."""

    name: str  # the task's directory name in NOAH's export, e.g. "clevr_count"
    builder: str  # TFDS name[/config]
    version: str  # version pattern task_adaptation pins, e.g. "3.*.*"
    num_classes: int
    label: LabelFn = class_label
    val_from: Literal["train", "validation", "test"] = "validation"
    train_percent: int | None = None
    val_percent: int | None = None
    test: str = "test"
    pixel_scale: int = 1  # dsprites stores 0/1 pixels; task_adaptation multiplies by 255
    manual_download: bool = False

    @property
    def tfds_name(self) -> str:
        return f"{self.builder}:{self.version}"


def _dsprites(name: str, key: str, num_original: int) -> VtabTask:
    label = functools.partial(binned_label, key=key, num_original=num_original, num_classes=16)
    return VtabTask(
        name,
        "dsprites",
        "2.*.*",
        16,
        label=label,
        val_from="train",
        train_percent=80,
        val_percent=10,
        pixel_scale=255,
    )


def _smallnorb(name: str, key: str, num_classes: int) -> VtabTask:
    label = functools.partial(class_label, key=key)
    return VtabTask(
        name, "smallnorb", "2.*.*", num_classes, label=label, val_from="test", test="test[50%:]"
    )


def _clevr(name: str, label: LabelFn, num_classes: int) -> VtabTask:
    return VtabTask(
        name,
        "clevr",
        "3.*.*",
        num_classes,
        label=label,
        val_from="train",
        train_percent=90,
        test="validation",
    )


_TASKS = (
    VtabTask("cifar", "cifar100", "3.*.*", 100, val_from="train", train_percent=90),
    VtabTask("caltech101", "caltech101", "3.*.*", 102, val_from="train", train_percent=90),
    VtabTask("dtd", "dtd", "3.*.*", 47),
    VtabTask("oxford_flowers102", "oxford_flowers102", "2.*.*", 102),
    VtabTask("oxford_iiit_pet", "oxford_iiit_pet", "3.*.*", 37, val_from="train", train_percent=80),
    VtabTask("svhn", "svhn_cropped", "3.*.*", 10, val_from="train", train_percent=90),
    VtabTask("sun397", "sun397/tfds", "4.*.*", 397),
    VtabTask("patch_camelyon", "patch_camelyon", "2.*.*", 2),
    VtabTask(
        "eurosat", "eurosat/rgb", "2.*.*", 10, val_from="train", train_percent=60, val_percent=20
    ),
    VtabTask(
        "resisc45",
        "resisc45",
        "3.*.*",
        45,
        val_from="train",
        train_percent=60,
        val_percent=20,
        manual_download=True,
    ),
    VtabTask(
        "diabetic_retinopathy",
        "diabetic_retinopathy_detection/btgraham-300",
        "3.*.*",
        5,
        manual_download=True,
    ),
    _clevr("clevr_count", clevr_count, 8),
    _clevr("clevr_dist", clevr_distance, 6),
    VtabTask("dmlab", "dmlab", "2.0.1", 6),
    VtabTask("kitti", "kitti", "3.1.0", 4, label=kitti_closest_vehicle),
    _dsprites("dsprites_loc", "label_x_position", 32),
    _dsprites("dsprites_ori", "label_orientation", 40),
    _smallnorb("smallnorb_azi", "label_azimuth", 18),
    _smallnorb("smallnorb_ele", "label_elevation", 9),
)
#: task name -> VtabTask, in the benchmark's natural / specialized / structured order.
VTAB_TASKS: dict[str, VtabTask] = {task.name: task for task in _TASKS}


def vtab_task(name: str, *, version: str | None = None) -> VtabTask:
    """The task ``name``, at ``version`` (a TFDS version pattern) instead of its pinned one."""
    if name not in VTAB_TASKS:
        raise ValueError(f"unknown VTAB-1k task {name!r}; expected one of {list(VTAB_TASKS)}")
    task = VTAB_TASKS[name]
    return task if version is None else dataclasses.replace(task, version=version)


def tfds_splits(task: VtabTask, num_train: int) -> dict[str, str]:
    """The four VTAB-1k split strings of ``task`` for a ``train`` split of num_train examples."""
    if task.val_from == "train":
        if task.train_percent is None:
            raise ValueError(f"{task.name}: val_from='train' needs train_percent")
        start = task.train_percent * num_train // 100
        val = f"train[{start}:{start + VAL_SIZE}]"
    else:
        val = f"{task.val_from}[:{VAL_SIZE}]"
    if task.val_percent is None:
        test = task.test
    else:
        if task.train_percent is None:
            raise ValueError(f"{task.name}: val_percent needs train_percent")
        held = task.train_percent * num_train // 100 + task.val_percent * num_train // 100
        test = f"train[{held}:]"
    train = f"train[:{TRAIN_SIZE}]"
    return {"train800": train, "val200": val, "train800val200": f"{train}+{val}", "test": test}


@dataclasses.dataclass(frozen=True)
class TfdsSource:
    """ExampleSource over a tfds data source: decoded records -> (image, task label);
    ``version_dir`` is the prepared version's folder it reads (``builder.data_dir``)."""

    records: Sequence[Mapping[str, Any]]
    task: VtabTask
    version_dir: Path

    def __len__(self) -> int:
        return len(self.records)

    def read(self, indices: Sequence[int]) -> list[Example]:
        records = self.records.__getitems__(list(indices))  # type: ignore[attr-defined]
        return [(self._image(record), self.task.label(record)) for record in records]

    def _image(self, record: Mapping[str, Any]) -> np.ndarray:
        image = np.asarray(record["image"])
        if self.task.pixel_scale == 1:
            return image
        if image.max(initial=0) > 1:
            raise ValueError(f"{self.task.name}: expected 0/1 pixels, found {image.max()}")
        return image * np.uint8(self.task.pixel_scale)


def resolve_tfds_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """data_dir, else $TFDS_DATA_DIR, else tfds' default ~/tensorflow_datasets (a local path:
    ``experiments.local_files``)."""
    if data_dir is not None:
        return local_path(data_dir, what="data_dir")
    if "TFDS_DATA_DIR" in os.environ:
        return local_path(os.environ["TFDS_DATA_DIR"], what="$TFDS_DATA_DIR")
    return Path.home() / "tensorflow_datasets"


def open_vtab_split(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    version: str | None = None,
) -> TfdsSource:
    """The VTAB-1k ``split`` of task ``name`` from a prepared TFDS dataset under ``data_dir``.

    version overrides the task's pinned version pattern (e.g. "4.*.*" for oxford_iiit_pet,
    the only version tfds >= 4.9 can still build); the published numbers used the pinned one.
    Raises DataNotFoundError, saying how to prepare the dataset, when it is not there.
    """
    task = vtab_task(name, version=version)
    check_vtab1k_split(split)
    builder = prepared_builder(task, data_dir=data_dir)
    try:
        split_string = tfds_splits(task, builder.info.splits["train"].num_examples)[split]
        records = builder.as_data_source(split=split_string)
    except (KeyError, ValueError) as error:  # a split the prepared copy lacks, or too small
        prepared = {name: info.num_examples for name, info in builder.info.splits.items()}
        raise DataNotFoundError(
            f"{task.tfds_name} at {builder.data_dir} cannot give VTAB-1k's {split}: {error} "
            f"(its prepared splits: {prepared})"
        ) from error
    log.info("%s %s: %s from %s", name, split, split_string, builder.data_dir)
    return TfdsSource(records, task, Path(builder.data_dir))


def prepared_builder(task: VtabTask, *, data_dir: str | os.PathLike[str] | None) -> Any:
    """The tfds builder of ``task``'s prepared ArrayRecord copy under ``data_dir`` (see
    ``resolve_tfds_data_dir``), from its metadata only: no record is read. DataNotFoundError,
    saying how to prepare or convert it, when no such copy is there."""
    root = resolve_tfds_data_dir(data_dir)
    tfds = _tfds()
    try:
        builder = tfds.builder(task.tfds_name, data_dir=os.fspath(root))
    except (AssertionError, tfds.core.registered.DatasetNotFoundError) as error:
        raise DataNotFoundError(_not_prepared_message(task, root, str(error))) from error
    if not builder.is_prepared():
        raise DataNotFoundError(_not_prepared_message(task, root, f"nothing at {builder.data_dir}"))
    file_format = builder.info.file_format
    if file_format is None or file_format.value != "array_record":
        raise DataNotFoundError(
            f"{task.tfds_name} at {builder.data_dir} is stored as {file_format}; reading it "
            "without TensorFlow needs ArrayRecord. Convert it on a machine with TensorFlow: "
            f"`tfds convert_format --dataset_version_dir={builder.data_dir} "
            "--out_file_format=array_record --out_dir=<NEW_DIR>` and use that copy (or rebuild "
            "it with --file_format=array_record)."
        )
    return builder


def _tfds() -> Any:
    """The tensorflow_datasets module (heavy: imported only for this source); ValueError saying
    what to install, or which source reads VTAB-1k without it, where it does not import."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ValueError(
            f"source 'tfds' needs tensorflow-datasets, which does not import here ({error}): "
            "pip install 'tensorflow-datasets>=4.9' (this package depends on it), or read the "
            "VTAB-1k files of NOAH's release with --source=noah --data_dir=<its vtab-1k folder>"
        ) from error
    return tfds


def _not_prepared_message(task: VtabTask, root: Path, reason: str) -> str:
    manual = (
        f"{task.builder} needs a manual download first: fetch the archive as the TFDS "
        f"catalog page for {task.builder} says and put it in <DIR>/downloads/manual/. "
        if task.manual_download
        else ""
    )
    tfds = _tfds()
    buildable = tfds.builder(task.builder, data_dir=os.fspath(root)).version
    version_hint = (
        ""
        if buildable.match(task.version)
        else f" This tfds ({tfds.__version__}) builds only {task.builder}:{buildable}, not "
        f"{task.version}: prepare {task.version} with an older tfds, or pass "
        f"version='{buildable}' (`--set data.version={buildable}` on the command line; its "
        "examples or splits may differ from the published numbers)."
    )
    return (
        f"VTAB-1k task {task.name!r} needs the TFDS dataset {task.tfds_name} prepared as "
        f"ArrayRecord under {root} ({reason}). No dataset can be downloaded on this machine: "
        f"on a machine with internet access and TensorFlow, {manual}run "
        f"`tfds build {task.builder} --data_dir=<DIR> --file_format=array_record`, then copy "
        f"<DIR>/{task.builder}/<version>/ to {root}/{task.builder}/<version>/ here (or point "
        f"data_dir / TFDS_DATA_DIR at the copy).{version_hint}"
    )
