"""Load ViT checkpoints stored as flat npz files onto the param tree of experiments.models.vit.

Accepted key layouts (``/``-joined flat keys; see the module docstring of vit.py for ours):

* google-research/vision_transformer, pre-linen names: ``Transformer/posembed_input/pos_embedding``
  and per block ``LayerNorm_0, MultiHeadDotProductAttention_1, LayerNorm_2, MlpBlock_3``;
* the same with linen names: ``MultiHeadDotProductAttention_0, LayerNorm_1, MlpBlock_0``;
* ours, unscanned (``encoderblock_{i}``) or scanned (``encoderblock`` with a leading depth axis).

Loading rules (:func:`load_params`):

* head: taken from the model's init params when ``drop_head``, when the checkpoint has none or
  when its shape differs (other ``num_classes``); a checkpoint head is ignored by a headless model.
  ``pre_logits`` likewise (fresh when absent or mis-shaped; ignored when the model has none, as in
  the original fine-tuning code).
* class token: a checkpoint ``cls`` (and its pos-embedding row) is dropped for a model without a
  class token; a model with a class token needs one in the checkpoint.
* position embedding: the patch grid is resampled when it differs — ``"bilinear"`` is
  big_vision's ``scipy.ndimage.zoom(order=1)`` (corner-aligned), ``"bicubic"`` is torch's
  ``F.interpolate(mode="bicubic", align_corners=False, antialias=False)`` used by DINOv2. A flat
  count of positions does not say the grid's shape (256: 16x16 or 8x32?): the checkpoint's grid
  is that of the ``image_size`` its npz metadata records (:func:`save_npz`; an int, or
  [height, width]) in the patches of its ``embedding/kernel``, the model's that of the
  ``image_size`` given; without one, a grid is taken as square, and a count that is no square is
  a ValueError naming the checkpoint file.
* everything else must match key for key and shape for shape, and be floating (numpy stores
  bfloat16 as 2-byte voids, ``|V2``), else :class:`CheckpointMismatchError` holds every missing,
  unexpected, mis-shaped and not floating key (its message names the file and the first few).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import jax.numpy as jnp
import numpy as np

from experiments.local_files import open_npz
from peft_core.atomic_files import write_npz
from peft_core.paths import flatten, unflatten

logger = logging.getLogger(__name__)

PosembMethod = Literal["bilinear", "bicubic"]
#: Images of side n (n x n), or (height, width).
ImageSize = int | tuple[int, int]

METADATA_KEY = "__metadata__"
_SCANNED_PREFIX = "Transformer/encoderblock/"
_BLOCK_KEY = re.compile(r"^Transformer/encoderblock_(\d+)/(.+)$")
_LEGACY_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^Transformer/posembed_input/pos_embedding$"), "pos_embedding"),
    *(
        (re.compile(rf"^(Transformer/encoderblock_\d+)/{old}/"), rf"\1/{new}/")
        for old, new in (
            ("MultiHeadDotProductAttention_1", "MultiHeadDotProductAttention_0"),
            ("LayerNorm_2", "LayerNorm_1"),
            ("MlpBlock_3", "MlpBlock_0"),
        )
    ),
)
_CUBIC_A = -0.75  # torch's bicubic coefficient


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the model: lists missing, unexpected, mis-shaped and not
    floating keys (every one in its attributes; the message names ``source``, the npz, where
    known, and the first few of each kind)."""

    def __init__(
        self,
        *,
        missing: list[str],
        unexpected: list[str],
        mis_shaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
        not_floating: list[tuple[str, np.dtype]],
        source: str | Path | None = None,
    ) -> None:
        self.missing, self.unexpected, self.mis_shaped = missing, unexpected, mis_shaped
        self.not_floating = not_floating
        named = f"checkpoint {source}" if source is not None else "checkpoint"
        lines = [f"{named} does not match the model:"]
        if missing:
            lines.append(f"  missing ({len(missing)}): " + _first(missing))
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): " + _first(unexpected))
        for key, got, want in mis_shaped[:_SHOWN]:
            lines.append(f"  mis-shaped: {key}: checkpoint {got}, model {want}")
        if len(mis_shaped) > _SHOWN:
            lines.append(f"  ... and {len(mis_shaped) - _SHOWN} more mis-shaped")
        for key, dtype in not_floating[:_SHOWN]:
            lines.append(f"  not floating: {key} ({dtype.str if dtype.kind == 'V' else dtype})")
        if len(not_floating) > _SHOWN:
            lines.append(f"  ... and {len(not_floating) - _SHOWN} more not floating")
        super().__init__("\n".join(lines))


#: Keys of each kind a CheckpointMismatchError's message shows (its lists hold every one): a
#: checkpoint of another model misses hundreds, which would bury the message.
_SHOWN = 8


def _first(keys: list[str]) -> str:
    more = f", ... and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


# ---------------------------------------------------------------------------------- npz files


def save_npz(
    params: Mapping[str, Any], path: str | Path, *, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write a param tree as a flat npz ("/"-joined keys) plus optional JSON ``metadata``; its
    ``image_size`` (an int, or [height, width]: the images the ``pos_embedding`` is laid out for)
    gives :func:`load_params` the patch grid."""
    path = Path(path)
    arrays: dict[str, Any] = {k: np.asarray(v) for k, v in flatten(params).items()}
    if metadata is not None:
        arrays[METADATA_KEY] = np.asarray(json.dumps(dict(metadata)))
    return write_npz(path, arrays)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Flat ``{key: array}`` of an npz checkpoint, without its metadata entry."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}; download e.g. ViT-B_16.npz from "
            "gs://vit_models/imagenet21k/ or export DINOv2 with "
            "`python -m experiments.weights dinov2-s14`"
        )
    with open_npz(path) as npz:
        return {k: npz[k] for k in npz.files if k != METADATA_KEY}


def npz_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata saved by :func:`save_npz` (empty dict when there is none)."""
    with open_npz(path) as npz:
        return json.loads(str(npz[METADATA_KEY])) if METADATA_KEY in npz.files else {}


# ----------------------------------------------------------------------------- key layouts


def canonical_key(key: str) -> str:
    """Pre-linen ViT name -> our name (other keys are returned unchanged)."""
    for pattern, replacement in _LEGACY_RENAMES:
        key = pattern.sub(replacement, key)
    return key


def unstack_blocks(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Scanned ``Transformer/encoderblock/k`` (depth, ...) -> ``encoderblock_{i}/k`` (...)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key.startswith(_SCANNED_PREFIX):
            rest = key[len(_SCANNED_PREFIX) :]
            for i, block_value in enumerate(value):
                out[f"Transformer/encoderblock_{i}/{rest}"] = block_value
        else:
            out[key] = value
    return out


def stack_blocks(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`unstack_blocks`: stack ``encoderblock_{0..depth-1}/k`` along axis 0."""
    blocks: dict[str, dict[int, Any]] = {}
    out: dict[str, Any] = {}
    for key, value in flat.items():
        match = _BLOCK_KEY.match(key)
        if match:
            blocks.setdefault(match.group(2), {})[int(match.group(1))] = value
        else:
            out[key] = value
    for rest, by_index in blocks.items():
        if sorted(by_index) != list(range(len(by_index))):
            raise ValueError(f"cannot stack {rest!r}: block indices {sorted(by_index)}")
        out[_SCANNED_PREFIX + rest] = np.stack([by_index[i] for i in range(len(by_index))])
    return out


def canonical_flat(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Any accepted layout -> our unscanned flat layout (raises if two keys collide)."""
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in unstack_blocks(flat).items():
        new = canonical_key(key)
        if new in out:
            raise ValueError(f"checkpoint keys {origin[new]!r} and {key!r} both map to {new!r}")
        out[new], origin[new] = value, key
    return out


# ------------------------------------------------------------------- position embeddings


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) corner-aligned linear interpolation: src = o · (n_in-1)/(n_out-1)."""
    src = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    lo = np.clip(np.floor(src).astype(int), 0, max(n_in - 2, 0))
    frac = src - lo
    matrix = np.zeros((n_out, n_in))
    np.add.at(matrix, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(matrix, (np.arange(n_out), np.minimum(lo + 1, n_in - 1)), frac)
    return matrix


def bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) torch bicubic (a=-0.75, half-pixel centres, edge-clamped, no antialias):
    src = (o + 0.5) · n_in/n_out - 0.5, taps floor(src)-1 .. floor(src)+2."""
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    base = np.floor(src).astype(int)
    t = src - base
    a = _CUBIC_A

    def near(x: np.ndarray) -> np.ndarray:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: np.ndarray) -> np.ndarray:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    weights = (far(t + 1), near(t), near(1 - t), far(2 - t))
    matrix = np.zeros((n_out, n_in))
    for offset, weight in zip(range(-1, 3), weights, strict=True):
        np.add.at(matrix, (np.arange(n_out), np.clip(base + offset, 0, n_in - 1)), weight)
    return matrix


def resample_grid(
    grid: np.ndarray, new_shape: tuple[int, int], *, method: PosembMethod
) -> np.ndarray:
    """Resize a (h, w, D) grid to (H, W, D) with separable interpolation matrices."""
    check_posemb_method(method)
    make = bilinear_matrix if method == "bilinear" else bicubic_matrix
    rows = make(grid.shape[0], new_shape[0])
    cols = make(grid.shape[1], new_shape[1])
    out = np.einsum("Hh,Ww,hwd->HWd", rows, cols, grid.astype(np.float64))
    return out.astype(grid.dtype)


def check_posemb_method(method: str) -> None:
    if method not in get_args(PosembMethod):
        raise ValueError(f"posemb method must be 'bilinear' or 'bicubic', got {method!r}")


def square_grid(num_tokens: int, *, what: str, hint: str = "") -> tuple[int, int]:
    """The (side, side) grid of ``num_tokens`` patch positions; a ValueError naming ``what``
    (and ending in ``hint``) when ``num_tokens`` is no square."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"{what} has {num_tokens} patch positions, not a square grid{hint}")
    return side, side


def image_grid(
    image_size: ImageSize, patch: tuple[int, ...], num_tokens: int, *, what: str
) -> tuple[int, int]:
    """The patch grid of ``image_size`` images in ``patch`` (height, width) patches; a ValueError
    naming ``what`` when it is no grid of ``num_tokens`` positions."""
    if isinstance(image_size, int | np.integer):  # a side read from an array: np.int64
        height = width = int(image_size)
    else:
        height, width = image_size
    grid = (height // patch[0], width // patch[1])
    if height % patch[0] or width % patch[1] or grid[0] * grid[1] != num_tokens:
        raise ValueError(
            f"{what} has {num_tokens} patch positions, which {height}x{width} images in "
            f"{patch[0]}x{patch[1]} patches do not make (a {grid[0]}x{grid[1]} grid)"
        )
    return grid


def resample_posemb(
    posemb: np.ndarray,
    *,
    num_prefix_tokens: int,
    grid: tuple[int, int],
    new_grid: tuple[int, int],
    method: PosembMethod,
) -> np.ndarray:
    """(1, c + h*w, D) on a (h, w) ``grid`` -> (1, c + H*W, D) on ``new_grid`` (H, W); the c
    prefix (class token) rows are kept."""
    if grid == new_grid:
        return posemb
    prefix, patches = posemb[:, :num_prefix_tokens], posemb[0, num_prefix_tokens:]
    resampled = resample_grid(patches.reshape(*grid, -1), new_grid, method=method)
    return np.concatenate([prefix, resampled.reshape(1, new_grid[0] * new_grid[1], -1)], axis=1)


def checkpoint_grid(
    metadata: Mapping[str, Any], patch: tuple[int, ...], num_tokens: int, *, named: str
) -> tuple[int, int]:
    """The patch grid of a checkpoint (``named`` in errors): that of the ``image_size`` its
    ``metadata`` records in ``patch`` patches (its ``embedding/kernel``'s), else square."""
    image_size = metadata.get("image_size")
    what = f"the pos_embedding of {named}"
    if image_size is None:
        hint = '; record its image size in its npz metadata ("image_size": [height, width])'
        return square_grid(num_tokens, what=what, hint=hint)
    if isinstance(image_size, list):
        image_size = tuple(image_size)
    if not _is_image_size(image_size):
        raise ValueError(
            f"{named}: metadata image_size must be an int or [height, width] of ints >= 1, "
            f"got {image_size!r}"
        )
    return image_grid(image_size, patch, num_tokens, what=what)


def _is_image_size(value: Any) -> bool:
    sides = value if isinstance(value, tuple) and len(value) == 2 else (value,)
    return all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sides)


# --------------------------------------------------------------------------------- loading


def _is_head_key(key: str) -> bool:
    return key.startswith(("head/", "pre_logits/"))


def load_params(
    source: str | Path | Mapping[str, Any],
    init_params: Mapping[str, Any],
    *,
    drop_head: bool = False,
    posemb_method: PosembMethod = "bilinear",
    image_size: ImageSize | None = None,
) -> dict[str, Any]:
    """Checkpoint (npz path or flat dict) -> param tree shaped like ``init_params``.

    ``init_params`` are the model's init params (their fresh head is used when the head is
    replaced), ``image_size`` its input (n, or (height, width)), which sets its patch grid (None:
    square). Returns a nested dict of numpy arrays with the init params' dtypes, stacked if the
    model is scanned.
    """
    check_posemb_method(posemb_method)  # also when the grid needs no resampling
    metadata: dict[str, Any] = {}
    if isinstance(source, str | Path):
        raw, metadata, named = load_npz(source), npz_metadata(source), f"checkpoint {source}"
    else:
        raw, named = dict(source), "the checkpoint"
    ckpt = canonical_flat(raw)
    init_flat = flatten(init_params)
    scanned = any(k.startswith(_SCANNED_PREFIX) for k in init_flat)
    expected = unstack_blocks(init_flat)

    model_prefix = int("cls" in expected)
    ckpt_prefix = int("cls" in ckpt)
    if ckpt_prefix and not model_prefix and "pos_embedding" in ckpt:
        logger.info("dropping the checkpoint's class token and its pos-embedding row")
        ckpt["pos_embedding"] = ckpt["pos_embedding"][:, 1:]
        del ckpt["cls"]
        ckpt_prefix = 0
    if "pos_embedding" in ckpt and "pos_embedding" in expected:
        posemb = np.asarray(ckpt["pos_embedding"])
        model_patch = expected["embedding/kernel"].shape[:2]
        patch = ckpt["embedding/kernel"].shape[:2] if "embedding/kernel" in ckpt else model_patch
        grid = checkpoint_grid(metadata, patch, posemb.shape[1] - ckpt_prefix, named=named)
        model_tokens = expected["pos_embedding"].shape[1] - model_prefix
        what = "the pos_embedding of the model"
        new_grid = (
            square_grid(model_tokens, what=what, hint="; give load_params its image_size")
            if image_size is None
            else image_grid(image_size, model_patch, model_tokens, what=what)
        )
        ckpt["pos_embedding"] = resample_posemb(
            posemb,
            num_prefix_tokens=ckpt_prefix,
            grid=grid,
            new_grid=new_grid,
            method=posemb_method,
        )

    out: dict[str, Any] = {}
    missing: list[str] = []
    mis_shaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    not_floating: list[tuple[str, np.dtype]] = []
    for key, init_value in expected.items():
        want = tuple(init_value.shape)
        value = ckpt.get(key)
        if _is_head_key(key):
            fresh = value is None or tuple(value.shape) != want
            if fresh or (drop_head and key.startswith("head/")):
                logger.info("using the model's fresh init for %s", key)
                value = init_value
        if value is None:
            missing.append(key)
        elif tuple(value.shape) != want:
            mis_shaped.append((key, tuple(value.shape), want))
        elif not jnp.issubdtype(value.dtype, jnp.floating):
            not_floating.append((key, np.dtype(value.dtype)))
        else:
            out[key] = np.asarray(value, dtype=init_value.dtype)
    unexpected = sorted(k for k in ckpt if k not in expected and not _is_head_key(k))
    if missing or unexpected or mis_shaped or not_floating:
        raise CheckpointMismatchError(
            missing=missing,
            unexpected=unexpected,
            mis_shaped=mis_shaped,
            not_floating=not_floating,
            source=source if isinstance(source, str | Path) else None,
        )
    return unflatten(stack_blocks(out) if scanned else out)
