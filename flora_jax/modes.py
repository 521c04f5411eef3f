"""Which axes of a kernel FLoRA decomposes (its Tucker modes) and at which rank each.

Kernel axes (after any nn.scan stack axes) are read from a ``peft_core.Layer``:

- Conv kernel: order >= 4 with one output axis, i.e. Flax HWIO (kh, kw, in/groups, out) or
  DHWIO. The axes before the last two are *spatial* modes (rank ``kernel_rank``), the last two
  *channel* modes (rank ``rank``). The kernel's own shape is decomposed, so grouped and
  depthwise convs, e.g. (7, 7, 1, C), need nothing special (the torch reference builds
  (out, in, kh, kw) from ``in_channels`` and breaks on them). Conv kernels keep all their
  modes under both views, as in the paper.
- Any other kernel (Dense (in, out), DenseGeneral q/k/v (D, H, Dh), attention out (H, Dh, D)):
  every axis is a channel mode under ``tucker="nd"``; under ``tucker="matrix"`` the kernel is
  first flattened to its (fan_in, fan_out) matrix view, as the paper's nn.Linear sees it.
  1-D conv kernels (k, in, out) cannot be told apart from DenseGeneral kernels: they are read
  this way too (give their ranks with ``layer_ranks`` if that is not what you want).

Default ranks are clipped to the mode size, so a head axis of 12 at rank 16 gets rank 12 and a
size-1 mode rank 1; a dense kernel's matrix (its matrix view, or a 2-D kernel in either view),
whose two modes are the whole (fan_in, fan_out), refuses a ``rank`` above min(fan_in, fan_out),
as LoRA does: clipped, it would train a full-size update; any kernel refuses a ``rank`` above
all its channel modes (a 1x1 conv's (1, 1, 8, 8) at 16) for the same reason.
``layer_ranks`` maps a regex over kernel paths to explicit per-mode ranks (first match wins);
those are checked, never clipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from peft_core.adapter import positive_int
from peft_core.layers import Layer
from peft_core.paths import matches

TUCKER_VIEWS = ("nd", "matrix")
LayerRanks = Mapping[str, Sequence[int]]


@dataclasses.dataclass(frozen=True)
class TuckerModes:
    """One layer's Tucker view: dW (``sizes``) = G (``ranks``) x1 U1 ... xN UN,
    U_n of shape (sizes[n], ranks[n]); dW reshapes to the kernel shape (stack axes excluded)."""

    sizes: tuple[int, ...]
    ranks: tuple[int, ...]


def num_spatial_axes(layer: Layer) -> int:
    """Leading spatial axes of a conv kernel (2 for HWIO); 0 for non-conv kernels."""
    order = len(layer.in_shape) + len(layer.out_shape)
    return order - 2 if order >= 4 and len(layer.out_shape) == 1 else 0


def tucker_modes(
    layer: Layer,
    *,
    tucker: str,
    rank: int,
    kernel_rank: int,
    layer_ranks: LayerRanks | None = None,
) -> TuckerModes:
    """The modes of ``layer``'s kernel under the ``tucker`` view and their ranks (see module)."""
    n_spatial = num_spatial_axes(layer)
    if n_spatial or tucker == "nd":
        sizes = layer.in_shape + layer.out_shape
    else:
        sizes = (layer.fan_in, layer.fan_out)
    explicit = _explicit_ranks(layer, sizes, layer_ranks)
    if explicit is not None:
        return TuckerModes(sizes, explicit)
    if not n_spatial and len(sizes) == 2 and rank > min(sizes):  # a matrix, in either view
        raise ValueError(
            f"FLoRA rank {rank} exceeds min(fan_in, fan_out) = {min(sizes)} of "
            f"{layer.kernel_path} {layer.kernel_shape} (its matrix view {sizes})"
        )
    channels = sizes[n_spatial:]
    if rank > max(channels):
        raise ValueError(
            f"FLoRA rank {rank} exceeds every channel mode of {layer.kernel_path} "
            f"{layer.kernel_shape} (sizes {channels}): clipped to them, its core would be as "
            "large as the kernel"
        )
    ranks = tuple(
        min(kernel_rank if axis < n_spatial else rank, size) for axis, size in enumerate(sizes)
    )
    return TuckerModes(sizes, ranks)


def _explicit_ranks(
    layer: Layer, sizes: tuple[int, ...], layer_ranks: LayerRanks | None
) -> tuple[int, ...] | None:
    for pattern, ranks in (layer_ranks or {}).items():
        if not matches(layer.kernel_path, pattern):
            continue
        if isinstance(ranks, (str, bytes)) or not isinstance(ranks, Sequence):
            raise ValueError(
                f"layer_ranks[{pattern!r}] = {ranks!r}: give a sequence of per-mode ranks, one "
                f"int per Tucker mode of {layer.kernel_path} (sizes {sizes})"
            )
        ranks = tuple(ranks)
        fits = len(ranks) == len(sizes) and all(
            positive_int(r) and r <= s for r, s in zip(ranks, sizes, strict=True)
        )
        if not fits:
            raise ValueError(
                f"layer_ranks[{pattern!r}] = {ranks} does not fit {layer.kernel_path}: its "
                f"Tucker modes have sizes {sizes}, so give {len(sizes)} ranks, each in "
                "[1, mode size]"
            )
        return ranks
    return None
