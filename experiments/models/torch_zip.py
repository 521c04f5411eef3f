"""Read PyTorch ``.pth`` checkpoints into numpy arrays without importing torch.

``torch.save`` writes one of two layouts, both read here:

* zip (torch >= 1.6): ``<root>/data.pkl`` is a pickle whose tensors point, through persistent
  ids ``("storage", StorageClass, key, location, numel)``, at raw little-endian buffers stored as
  zip members ``<root>/data/<key>`` (torch >= 2.1 writes the byte order in ``<root>/byteorder``;
  a big-endian file is refused, as is a legacy one whose system info says so).
* legacy (older torch, e.g. the EfficientNet-Lite0 wheel): a stream of pickles — magic number,
  protocol version, system info, the object (persistent ids ``("storage", StorageClass, key,
  location, numel, view_metadata)``), the list of storage keys — followed, for each key in that
  order, by an int64 element count and the raw buffer.

Tensors are rebuilt by ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``;
here that becomes a strided numpy view of the storage, copied to a contiguous array once every
buffer is read (legacy buffers come after the pickle). Unpickling is restricted to
an allow-list of globals (OrderedDict, the tensor/parameter rebuilders, the storage classes), so
a checkpoint cannot run arbitrary code. Anything else, and a truncated or corrupt file, raises a
ValueError naming the file.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import ml_dtypes
import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C

#: torch storage class name -> numpy dtype of its elements.
STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _StorageType:
    """Stand-in for ``torch.<Name>Storage``: only carries the element dtype."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


def _rebuild_tensor_v2(
    storage: np.ndarray,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> np.ndarray:
    """numpy twin of torch's rebuilder: a view of storage[offset:] with ``size`` / ``stride``."""
    del requires_grad, backward_hooks, metadata
    if any(n == 0 for n in size):
        return np.zeros(size, storage.dtype)
    itemsize = storage.dtype.itemsize
    needed = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1
    if needed > storage.size:
        raise ValueError(
            f"tensor of size {size}, stride {stride}, offset {storage_offset} overruns its "
            f"storage of {storage.size} elements"
        )
    return np.lib.stride_tricks.as_strided(
        storage[storage_offset:], shape=size, strides=[s * itemsize for s in stride]
    )


def _rebuild_parameter(
    data: np.ndarray, requires_grad: bool = False, backward_hooks: Any = None
) -> np.ndarray:
    del requires_grad, backward_hooks
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _TorchUnpickler(pickle.Unpickler):
    """Unpickler that maps torch globals to numpy stand-ins and storages to ``load_storage``."""

    def __init__(
        self, file: IO[bytes], load_storage: Callable[[_StorageType, str, int], np.ndarray]
    ) -> None:
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to unpickle global {module}.{name}: only tensors, storages and "
                "OrderedDict are allowed in a weights file"
            ) from None

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not isinstance(pid, tuple) or len(pid) < 5:  # torch's are 5- or 6-tuples
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        kind, storage_type, key, _location, numel, *view = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        if view and view[0] is not None:
            raise pickle.UnpicklingError(f"storage views are not supported: {pid!r}")
        return self._load_storage(storage_type, str(key), int(numel))


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise ValueError(f"expected one data.pkl in the zip, found {pickles}")
        root = pickles[0][: -len("data.pkl")]
        if f"{root}byteorder" in names:  # torch >= 2.1 records it
            _check_little_endian(archive.read(f"{root}byteorder").strip() == b"little")

        def load_storage(storage_type: _StorageType, key: str, numel: int) -> np.ndarray:
            name = f"{root}data/{key}"
            if name not in names:
                raise ValueError(f"the zip has no storage {name}")
            return np.frombuffer(archive.read(name), storage_type.dtype, count=numel)

        with archive.open(pickles[0]) as f:
            return _TorchUnpickler(io.BytesIO(f.read()), load_storage).load()


def _no_storage(storage_type: _StorageType, key: str, numel: int) -> np.ndarray:
    raise pickle.UnpicklingError(f"storage {key} referenced outside the tensor pickle")


def _load_legacy(path: Path) -> Any:
    with path.open("rb") as f:
        try:
            magic = _TorchUnpickler(f, _no_storage).load()
        except (pickle.UnpicklingError, EOFError, ValueError) as e:
            raise ValueError(f"neither a zip nor a legacy torch file ({e})") from e
        if magic != LEGACY_MAGIC_NUMBER:
            raise ValueError("neither a zip nor a legacy torch file")
        _TorchUnpickler(f, _no_storage).load()  # protocol version
        system_info = _TorchUnpickler(f, _no_storage).load()
        if isinstance(system_info, dict):
            _check_little_endian(system_info.get("little_endian", True))
        storages: dict[str, np.ndarray] = {}

        def load_storage(storage_type: _StorageType, key: str, numel: int) -> np.ndarray:
            # Buffers follow the pickles: hand out an empty one now, fill it below.
            return storages.setdefault(key, np.empty(numel, storage_type.dtype))

        result = _TorchUnpickler(f, load_storage).load()
        for key in _TorchUnpickler(f, _no_storage).load():
            storage = storages[key]
            numel = int(np.frombuffer(_read(f, 8, f"the size of storage {key}"), "<i8")[0])
            if numel != storage.size:
                raise ValueError(f"storage {key} has {numel} elements, not {storage.size}")
            raw = _read(f, numel * storage.itemsize, f"storage {key}")
            storage[:] = np.frombuffer(raw, storage.dtype, count=numel)
    return result


def _check_little_endian(little: bool) -> None:
    """Storages are read as little-endian: big-endian ones would load as other numbers."""
    if not little:
        raise ValueError("its storages are big-endian: save it again on a little-endian machine")


def _read(f: IO[bytes], size: int, what: str) -> bytes:
    """The next ``size`` bytes of ``f``; ValueError naming ``what`` where the file ends first."""
    data = f.read(size)
    if len(data) != size:
        raise ValueError(f"the file ends inside {what}: truncated?")
    return data


def _copy_arrays(obj: Any) -> Any:
    """Replace every storage view in a nested dict / list / tuple by its own contiguous copy."""
    if isinstance(obj, np.ndarray):
        return np.array(obj, copy=True, order="C")
    if isinstance(obj, dict):
        return type(obj)((k, _copy_arrays(v)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(_copy_arrays(v) for v in obj)
    return obj


def load_torch_file(path: str | Path) -> Any:
    """Unpickle a ``torch.save`` file (zip or legacy); every tensor becomes an ``np.ndarray``.

    ValueError "<path>: <why>" for a file this reader refuses: malformed, truncated, corrupt, or
    holding objects other than tensors (a training checkpoint's ``argparse.Namespace``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no torch checkpoint at {path}")
    try:
        loaded = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    except (ValueError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: {e}") from e
    return _copy_arrays(loaded)
