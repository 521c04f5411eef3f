"""``load_task``: the one way in. Any source, any split -> SplitArrays."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from experiments.data.base import DataNotFoundError, ExampleSource, ImageFileSource, SplitArrays
from experiments.data.folder import class_folders, existing_npz, open_folder_split, open_npz_split
from experiments.data.materialize import materialize_cached
from experiments.data.noah import existing_split_list, open_noah_split, split_list_path
from experiments.data.offline import check_offline_files, check_offline_task, open_offline_split
from experiments.data.preprocess import Normalization, check_normalization, normalize
from experiments.data.splits import check_vtab1k_split
from experiments.data.vtab import (
    open_vtab_split,
    prepared_builder,
    resolve_tfds_data_dir,
    vtab_task,
)
from experiments.local_files import local_path

Source = Literal["tfds", "noah", "offline", "npz", "folder"]
SOURCES: tuple[str, ...] = ("tfds", "noah", "offline", "npz", "folder")
#: seed of the permutation that splits offline / npz / folder data when none is given.
DEFAULT_SPLIT_SEED = 0
_FIXED_SPLIT_SOURCES = ("tfds", "noah")
#: Sources whose task is the path of the user's own data (an .npz file, a root of class folders).
PATH_SOURCES = ("npz", "folder")


def split_seed_of(source: str, seed: int | None) -> int:
    """The split seed a load of ``source`` runs with: ``seed``, or ``DEFAULT_SPLIT_SEED`` for
    None (the default). The tfds and noah splits are fixed: they take no seed (ValueError)."""
    if seed is not None and source in _FIXED_SPLIT_SOURCES:
        raise ValueError(f"source {source!r} has fixed splits; seed must be None")
    return DEFAULT_SPLIT_SEED if seed is None else seed


def check_task_options(
    name: str,
    *,
    source: str,
    data_dir: str | os.PathLike[str] | None = None,
    version: str | None = None,
    seed: int | None = None,
) -> None:
    """ValueError for what :func:`load_task` refuses whatever the files hold: an unknown source
    or task (a VTAB-1k task for tfds and noah, an offline one), a version off tfds, a seed for
    fixed splits, noah without its root folder, a data_dir where the task names the path (npz,
    folder) or no folder holds it (digits)."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
    if source in _FIXED_SPLIT_SOURCES:
        vtab_task(name)
    if version is not None and source != "tfds":
        raise ValueError(f"version applies to source 'tfds' only, not {source!r}")
    split_seed_of(source, seed)
    if source == "noah" and data_dir is None:
        raise ValueError("source 'noah' needs data_dir= the vtab-1k root folder")
    if data_dir is not None and source in PATH_SOURCES:
        raise ValueError(f"source {source!r} takes its path as name; leave data_dir unset")
    if source == "offline":
        check_offline_task(name, data_dir=data_dir)


def _expanded(
    name: str, source: str, data_dir: str | os.PathLike[str] | None
) -> tuple[str, Path | None]:
    """(name, data_dir) with a leading ``~`` made the home folder, in the path of a user's
    data (npz, folder) and in ``data_dir``; empty paths and URLs refused (``local_path``)."""
    if source in PATH_SOURCES:
        name = os.fspath(local_path(name, what=f"the {source} task"))
    return name, None if data_dir is None else local_path(data_dir, what="data_dir")


def check_available(
    name: str,
    *,
    source: str,
    splits: Iterable[str],
    data_dir: str | os.PathLike[str] | None = None,
    version: str | None = None,
) -> None:
    """The error :func:`load_task` would give, for one of ``splits``, when the task's data is
    not on this machine (DataNotFoundError, saying what to fetch), found cheaply, before any
    image is decoded: tfds' prepared ArrayRecord copy (from its metadata), NOAH's split lists
    (not the images they name), the npz file, the class folders (a listing of the root), an
    offline set's files (or scikit-learn). Plus the ValueErrors of :func:`check_task_options`.

    ``cache_dir`` is no way around it: a cache entry's key holds a stamp of the source files
    (``_stamp``), so a load needs them even when its split is cached.

    Not checked (the load still finds them): what the files hold (a split too small or absent
    in the prepared tfds copy, images a NOAH list names but lacks, unreadable files, too few
    classes)."""
    check_task_options(name, source=source, data_dir=data_dir, version=version)
    name, data_dir = _expanded(name, source, data_dir)
    if source == "tfds":
        prepared_builder(vtab_task(name, version=version), data_dir=data_dir)
    elif source == "noah":
        assert data_dir is not None  # check_task_options
        for split in splits:
            check_vtab1k_split(split)
            existing_split_list(data_dir, name, split)
    elif source == "offline":
        check_offline_files(name, data_dir=data_dir)
    elif source == "npz":
        existing_npz(name)
    else:
        class_folders(Path(name))


def load_task(
    name: str,
    *,
    source: Source = "tfds",
    split: str = "train800",
    data_dir: str | os.PathLike[str] | None = None,
    image_size: int | None = None,
    normalization: Normalization | None = None,
    seed: int | None = None,
    version: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    num_workers: int | None = None,
) -> SplitArrays:
    """Load one split of one task as arrays.

    name: a VTAB-1k task ("cifar", "clevr_count", ... see VTAB_TASKS) for source "tfds" and
        "noah"; "fashion_mnist" / "mnist5k" / "digits" for "offline"; the .npz file or the
        folder-per-class root for "npz" / "folder".
    split: "train800", "val200", "train800val200", "test"; "<k>shot" for the seeded sources.
    data_dir: TFDS data dir (default $TFDS_DATA_DIR), NOAH's vtab-1k root (required), or an
        offline dataset's folder (default: where its package installs it).
    image_size: resize to (image_size, image_size) with PIL bicubic; None keeps native size.
    normalization: None keeps uint8 images (the input pipeline can normalise on device);
        "imagenet" or "minus1_1" returns float32 (see experiments.data.preprocess).
    seed: split permutation of offline / npz / folder data (default 0); the tfds and noah
        splits are fixed, so a seed there is an error.
    version: TFDS version pattern overriding the task's pinned one (source "tfds" only).
    cache_dir: keep the decoded, resized uint8 split there and memory-map it on later calls.
    num_workers: threads decoding and resizing images (default min(16, CPU count)).
    """
    check_task_options(name, source=source, data_dir=data_dir, version=version, seed=seed)
    name, data_dir = _expanded(name, source, data_dir)
    if normalization is not None:
        check_normalization(normalization)
    split_seed = split_seed_of(source, seed)
    example_source, num_classes, location, files = _open(
        name, source=source, split=split, data_dir=data_dir, seed=split_seed, version=version
    )
    if num_classes < 2:  # a user's npz or folder: one label, or one class folder
        raise ValueError(
            f"{name} holds {num_classes} class: a classifier needs at least 2 (check its labels "
            "or class folders)"
        )
    key = {
        "source": source,
        "name": name,
        "split": split,
        "location": location,
        "seed": split_seed,
        "version": version,
        "files": _stamp(files),
    }
    if isinstance(example_source, ImageFileSource):  # folder / NOAH files: read upright by EXIF
        key["decoding"] = "exif-upright"
    images, labels = materialize_cached(
        example_source,
        key=key,
        cache_dir=cache_dir,
        image_size=image_size,
        num_workers=num_workers,
    )
    if normalization is not None:
        images = normalize(images, normalization)
    return SplitArrays(
        images=images, labels=labels, num_classes=num_classes, name=name, split=split
    )


def _open(
    name: str,
    *,
    source: Source,
    split: str,
    data_dir: str | os.PathLike[str] | None,
    seed: int,
    version: str | None,
) -> tuple[ExampleSource, int, str, tuple[Path, ...]]:
    """(examples, num_classes, absolute data location, the user's files the split is read
    from) for the cache key: for TFDS every file of the prepared version read (its info and
    ArrayRecord shards); offline sets read from the package that ships them name none (from a
    ``data_dir``: every file in it)."""
    if source == "tfds":  # the files of the version read: a rebuild or a newer version is new
        records = open_vtab_split(name, split, data_dir=data_dir, version=version)
        location = str(resolve_tfds_data_dir(data_dir).resolve())
        files = tuple(sorted(p for p in records.version_dir.iterdir() if p.is_file()))
        return records, records.task.num_classes, location, files
    if source == "noah":
        assert data_dir is not None  # check_task_options
        images = open_noah_split(name, split, root=data_dir)
        files = (split_list_path(data_dir, name, split), *images.paths)
        return images, vtab_task(name).num_classes, str(Path(data_dir).resolve()), files
    if source == "offline":
        arrays, num_classes = open_offline_split(name, split, seed=seed, data_dir=data_dir)
        if data_dir is None:
            return arrays, num_classes, "installed", ()
        files = tuple(sorted(p for p in Path(data_dir).iterdir() if p.is_file()))
        return arrays, num_classes, str(Path(data_dir).resolve()), files
    if source == "npz":
        examples, num_classes = open_npz_split(name, split, seed=seed)
        return examples, num_classes, str(Path(name).resolve()), (Path(name),)
    folder, num_classes = open_folder_split(name, split, seed=seed)
    return folder, num_classes, str(Path(name).resolve()), folder.paths


def _stamp(files: Iterable[Path]) -> str:
    """A digest of each file's path, size and modification time: rewriting the data under the
    same name gives a new cache key instead of the old arrays."""
    digest = hashlib.sha256()
    for path in files:
        try:
            stat = path.stat()
        except FileNotFoundError as error:
            what = f"a broken link (to {os.readlink(path)})" if path.is_symlink() else "gone"
            raise DataNotFoundError(f"{path} is {what}: fix or remove it") from error
        digest.update(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]
