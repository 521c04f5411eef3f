"""experiments.models.torch_zip against files written the way torch.save writes them (zip and
legacy layouts), without torch: every storage type's dtype and bits, empty tensors, views that
share one storage, parameters and tensors in lists and tuples, a legacy storage record of the
wrong size, and malformed files."""

from __future__ import annotations

import argparse
import io
import pickle
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from torch_stand_in import install_torch_stand_in

from experiments.models.torch_zip import LEGACY_MAGIC_NUMBER, load_torch_file


class Storage:
    def __init__(self, key: str) -> None:
        self.key = key


class Tensor:
    """A view (offset, size, stride in elements) of the storage ``key``, pickled as torch
    pickles a tensor: torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, key: str, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
        self.key, self.offset, self.size, self.stride = key, offset, size, stride

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        args = (Storage(self.key), self.offset, self.size, self.stride, False, OrderedDict())
        return rebuild, args


class Parameter:
    """An nn.Parameter, pickled as torch pickles one (without hooks or extra state):
    torch._utils._rebuild_parameter(data, requires_grad, backward_hooks)."""

    def __init__(self, data: Tensor) -> None:
        self.data = data

    def __reduce__(self):
        return sys.modules["torch._utils"]._rebuild_parameter, (self.data, True, OrderedDict())


def save(
    path: Path,
    obj: object,
    storages: dict[str, tuple[str, np.ndarray]],
    monkeypatch: pytest.MonkeyPatch,
    *,
    legacy: bool,
    numel_records: dict[str, int] | None = None,
    edit_pid: Callable[[tuple], object] = lambda pid: pid,
    system_info: object = None,
) -> None:
    """Write ``obj`` (Tensor leaves) as torch.save does; ``storages``: key -> (torch storage
    class name, its elements). ``numel_records`` overrides a legacy storage's size record,
    ``edit_pid`` rewrites each persistent id, ``system_info`` replaces a legacy file's."""
    torch = install_torch_stand_in(monkeypatch, {name for name, _ in storages.values()})

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if not isinstance(o, Storage):
                return None
            name, data = storages[o.key]
            pid = ("storage", getattr(torch, name), o.key, "cpu", data.size)
            return edit_pid((*pid, None) if legacy else pid)  # legacy: + view_metadata

    def dumps(o: object) -> bytes:
        out = io.BytesIO()
        Pickler(out, protocol=2).dump(o)
        return out.getvalue()

    if legacy:
        info = {"little_endian": True} if system_info is None else system_info
        parts = [dumps(LEGACY_MAGIC_NUMBER), dumps(1001), dumps(info)]
        parts += [dumps(obj), dumps(list(storages))]
        for key, (_, data) in storages.items():
            numel = (numel_records or {}).get(key, data.size)
            parts += [np.array([numel], "<i8").tobytes(), data.tobytes()]
        path.write_bytes(b"".join(parts))
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", dumps(obj))
            for key, (_, data) in storages.items():
                archive.writestr(f"archive/data/{key}", data.tobytes())
    monkeypatch.delitem(sys.modules, "torch")  # the reader must not need it


VALUES = [1.5, -2.25, 0.099609375, 3.0e4]  # exact in float16 and bfloat16 alike


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize(
    ("storage", "dtype"),
    [("FloatStorage", np.float32), ("HalfStorage", np.float16),
     ("BFloat16Storage", ml_dtypes.bfloat16), ("DoubleStorage", np.float64),
     ("LongStorage", np.int64)],
)  # fmt: skip
def test_each_storage_type_keeps_its_dtype_and_values(
    tmp_path, monkeypatch, legacy, storage, dtype
):
    data = np.asarray(VALUES, np.float64).astype(dtype)
    save(tmp_path / "w.pth", {"w": Tensor("0", 0, (2, 2), (2, 1))}, {"0": (storage, data)},
         monkeypatch, legacy=legacy)  # fmt: skip
    loaded = load_torch_file(tmp_path / "w.pth")["w"]
    assert loaded.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(loaded, data.reshape(2, 2))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_empty_tensors_load_as_empty_arrays(tmp_path, monkeypatch, legacy):
    """torch.empty(3, 0) has strides (1, 1) and an empty storage."""
    tensors = {"a": Tensor("0", 0, (0,), (1,)), "b": Tensor("0", 0, (3, 0), (1, 1))}
    save(tmp_path / "w.pth", tensors, {"0": ("FloatStorage", np.zeros(0, np.float32))},
         monkeypatch, legacy=legacy)  # fmt: skip
    loaded = load_torch_file(tmp_path / "w.pth")
    assert (loaded["a"].shape, loaded["b"].shape) == ((0,), (3, 0))
    assert loaded["b"].dtype == np.float32


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_views_of_one_storage_read_its_elements(tmp_path, monkeypatch, legacy):
    """Two tensors on one storage (a legacy file lists its buffer once, after the pickle): a
    slice and a transposed view at an offset."""
    data = 1000.0 + np.arange(6, dtype=np.float32)
    tensors = {"a": Tensor("0", 0, (2,), (1,)), "b": Tensor("0", 2, (2, 2), (1, 2))}
    save(tmp_path / "w.pth", tensors, {"0": ("FloatStorage", data)}, monkeypatch, legacy=legacy)
    loaded = load_torch_file(tmp_path / "w.pth")
    np.testing.assert_array_equal(loaded["a"], data[:2])
    np.testing.assert_array_equal(loaded["b"], data[2:].reshape(2, 2).T)


def test_a_legacy_storage_record_of_another_size_is_refused(tmp_path, monkeypatch):
    data = np.arange(6, dtype=np.float32)
    save(tmp_path / "w.pth", {"w": Tensor("0", 0, (5,), (1,))}, {"0": ("FloatStorage", data)},
         monkeypatch, legacy=True, numel_records={"0": 5})  # fmt: skip
    with pytest.raises(ValueError, match="storage 0 has 5 elements, not 6"):
        load_torch_file(tmp_path / "w.pth")


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_parameters_lists_and_tuples_of_tensors_load_as_arrays_of_their_own(
    tmp_path, monkeypatch, legacy
):
    """A pickled nn.Parameter (torch.save(dict(model.named_parameters())), or of
    list(model.parameters())) is rebuilt as its data; tensors in lists and tuples are copied out
    of their storage."""
    data = 10.0 + np.arange(6, dtype=np.float32)
    obj = {
        "w": Parameter(Tensor("0", 0, (2, 3), (3, 1))),
        "layers": [Tensor("0", 0, (2,), (1,)), Parameter(Tensor("0", 4, (2,), (1,)))],
        "pair": (Tensor("0", 1, (3,), (2,)), 7),
    }
    save(tmp_path / "w.pth", obj, {"0": ("FloatStorage", data)}, monkeypatch, legacy=legacy)
    loaded = load_torch_file(tmp_path / "w.pth")
    np.testing.assert_array_equal(loaded["w"], data.reshape(2, 3))
    assert isinstance(loaded["layers"], list) and isinstance(loaded["pair"], tuple)
    np.testing.assert_array_equal(loaded["layers"][0], data[:2])
    np.testing.assert_array_equal(loaded["layers"][1], data[4:])
    np.testing.assert_array_equal(loaded["pair"][0], data[1::2])
    assert loaded["pair"][1] == 7
    arrays = [loaded["w"], *loaded["layers"], loaded["pair"][0]]
    assert all(a.flags.owndata and a.flags.c_contiguous and a.flags.writeable for a in arrays)


def _two_pickles(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for root in ("b", "a"):
            archive.writestr(f"{root}/data.pkl", pickle.dumps({}, protocol=2))


def _no_pickle(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/version", "3\n")


def _saved(*, legacy: bool, offset: int = 0, info_tensor: bool = False, **options: Any):
    """A writer of one (2, 2) tensor at ``offset`` of a 6-float storage (also in a legacy
    file's system info for ``info_tensor``) with save()'s ``options``."""

    def write(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        tensor = Tensor("0", offset, (2, 2), (2, 1))
        info = {"little_endian": True, "x": tensor} if info_tensor else None
        storages = {"0": ("FloatStorage", np.zeros(6, np.float32))}
        save(path, {"w": tensor}, storages, monkeypatch, legacy=legacy, system_info=info,
             **options)  # fmt: skip

    return write


def _damaged(*, legacy: bool, damage: Callable[[bytes], bytes]):
    """A writer of ``_saved(legacy=legacy)``'s file with ``damage`` applied to its bytes."""

    def write(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        _saved(legacy=legacy)(path, monkeypatch)
        path.write_bytes(damage(path.read_bytes()))

    return write


def _flip_storage_byte(raw: bytes) -> bytes:
    """A zip whose storage member no longer matches its CRC (the storage holds zeros)."""
    at = raw.index(bytes(24))
    return raw[:at] + b"\xff" + raw[at + 1 :]


def _without_storage(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _saved(legacy=False)(path, monkeypatch)
    with zipfile.ZipFile(path) as archive:
        pickled = archive.read("archive/data.pkl")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickled)


def _foreign_global(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A training checkpoint's argparse.Namespace beside its weights."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"args": argparse.Namespace()}))


def _big_endian(*, legacy: bool):
    """A writer of a file that says its storages are big-endian (torch.save on s390x)."""

    def write(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        storages = {"0": ("FloatStorage", np.zeros(4, ">f4"))}
        info = {"little_endian": False}
        save(path, {"w": Tensor("0", 0, (4,), (1,))}, storages, monkeypatch, legacy=legacy,
             system_info=info)  # fmt: skip
        if not legacy:
            with zipfile.ZipFile(path, "a") as archive:
                archive.writestr("archive/byteorder", "big")

    return write


@pytest.mark.parametrize(
    ("write", "error", "match"),
    [
        (_saved(legacy=False, offset=3), ValueError,
         r"w.pth: tensor of size \(2, 2\), stride \(2, 1\), offset 3 overruns its storage of 6 "
         "elements$"),
        (_saved(legacy=False, edit_pid=lambda pid: ("module", *pid[1:])),
         ValueError, r"w.pth: unsupported persistent id \('module', "),
        (_saved(legacy=False, edit_pid=lambda pid: ("storage", OrderedDict, *pid[2:])),
         ValueError, r"w.pth: unsupported persistent id \('storage', "),
        (_saved(legacy=False, edit_pid=lambda pid: "0"),
         ValueError, r"w.pth: unsupported persistent id '0'$"),
        (_saved(legacy=True, edit_pid=lambda pid: (*pid[:5], ("1", 2, 4))), ValueError,
         r"w.pth: storage views are not supported: \('storage', .*\('1', 2, 4\)\)$"),
        (_saved(legacy=True, info_tensor=True),
         ValueError, r"w.pth: storage 0 referenced outside the tensor pickle$"),
        (_two_pickles, ValueError,
         r"expected one data.pkl in the zip, found \['b/data.pkl', 'a/data.pkl'\]$"),
        (_no_pickle, ValueError, r"expected one data.pkl in the zip, found \[\]$"),
        (lambda path, _: path.write_bytes(pickle.dumps({"w": 1.0})), ValueError,
         r"w.pth: neither a zip nor a legacy torch file$"),
        (lambda path, _: None, FileNotFoundError, r"^no torch checkpoint at .*w.pth$"),
        (_damaged(legacy=True, damage=lambda raw: raw[:-4]), ValueError,
         r"w.pth: the file ends inside storage 0: truncated\?$"),
        (_damaged(legacy=True, damage=lambda raw: raw[:-28]), ValueError,
         r"w.pth: the file ends inside the size of storage 0: truncated\?$"),
        (_damaged(legacy=True, damage=lambda raw: raw[:40]), ValueError, r"w.pth: .*truncated"),
        (_damaged(legacy=False, damage=_flip_storage_byte), ValueError,
         r"w.pth: Bad CRC-32 for file 'archive/data/0'$"),
        (_without_storage, ValueError, r"w.pth: the zip has no storage archive/data/0$"),
        (_big_endian(legacy=False), ValueError,
         r"w.pth: its storages are big-endian: save it again on a little-endian machine$"),
        (_big_endian(legacy=True), ValueError,
         r"w.pth: its storages are big-endian: save it again on a little-endian machine$"),
        (_foreign_global, ValueError,
         r"w.pth: refusing to unpickle global argparse.Namespace: only tensors, "),
    ],
    ids=["overrun", "other-kind", "other-class", "not-a-tuple", "storage-view", "outside",
         "two-pickles", "no-pickle", "plain-pickle", "missing", "legacy-cut-storage",
         "legacy-cut-size", "legacy-cut-pickle", "zip-bad-crc", "zip-no-storage",
         "zip-big-endian", "legacy-big-endian", "foreign-global"],
)  # fmt: skip
def test_malformed_files_are_refused(tmp_path, monkeypatch, write, error, match):
    write(tmp_path / "w.pth", monkeypatch)
    with pytest.raises(error, match=match):
        load_torch_file(tmp_path / "w.pth")
