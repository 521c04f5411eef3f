"""FLoRA (Si et al.): dW = scale * G x1 U1 x2 U2 ... xN UN, a Tucker update of every kernel.

Per targeted layer the adapter holds ``{"core": G, "u0": U1, ..., "u{N-1}": UN}`` (Tucker modes
and ranks: ``flora_jax.modes``), with one independent set per slice of nn.scan stack axes.
Init follows the authors' code: G = 0 and every U_n ~ Normal(0, 1/sqrt(2 * r_n)) (torch
kaiming_normal_ with a = sqrt(3) on a (dim_n, r_n) tensor), so the adapted model starts as the
base model. ``scale`` multiplies dW as is (no alpha / r); the paper uses 0.04, 0.4 or 4.

``grads``: how the train step forms the core's and factors' gradients. "activation": on dense
kernels (at most two input axes) the update's matrix view is written as U V
(``flora_jax.tucker.matrix_factors``, rank r for Dense and DenseGeneral at rank r) and U, V get
their gradients from the layer's inputs and output gradients (``peft_core.activation_grads``),
the core and factors through them; convolutions stay in weight space. "weight": autodiff
through W0 + dW, which forms each layer's full (fan_in, fan_out) weight gradient. "auto"
(default): activation space on the dense layers wide enough for it to pay
(``activation_grads.held``) in calls with enough rows (``activation_grads.taps_activations``),
the weight gradient elsewhere, each tap reading the wider of x and dy once on an H200 or H100 with
many rows (``activation_grads.reads_once``). "pallas": as "auto", each tap reading it once
(``peft_core.one_read``; GPU or CPU, not TPU). Equal gradients.

Omitted on purpose: the reference's dropout (p = 0.01) on the input of the delta path. It
drops activations x in s * dropout(x) @ dW, which no weight transform can express, and it is
absent at evaluation, so ``apply`` and ``merge`` match the reference's eval-mode forward.
Each targeted kernel is its own layer: a Flax ViT's q, k and v are three (GLoRA fuses them into
torch's one qkv layer for the paper's parameter counts; FLoRA has no published ViT counts).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flora_jax.modes import TUCKER_VIEWS, LayerRanks, TuckerModes, tucker_modes
from flora_jax.tucker import core_on_input, core_side, kronecker_side, tucker_product
from peft_core.activation_grads import train_view
from peft_core.adapter import (
    Adapter,
    AParams,
    Config,
    add_delta,
    check_float_dtype,
    check_tree,
    delta_dtype,
    finite_nonzero,
    no_config,
    over_layers,
    positive_int,
    replace_leaves,
)
from peft_core.layers import Layer, check_tensor_paths, find_layers
from peft_core.paths import Params, Patterns, flatten, get_leaf, select
from peft_core.targets import DENSE_TARGETS

_CORE = "core"


def _factor_key(mode: int) -> str:
    """Key of the factor matrix U of Tucker mode ``mode`` (0-based) in a layer's params."""
    return f"u{mode}"


def flora(
    rank: int,
    *,
    kernel_rank: int = 2,
    scale: float = 4.0,
    tucker: str = "nd",
    layer_ranks: LayerRanks | None = None,
    targets: Patterns = DENSE_TARGETS,
    exclude: Patterns | None = None,
    stacked: Patterns | None = None,
    out_axes: Mapping[str, int] | None = None,
    dtype: Any = jnp.float32,
    grads: str = "auto",
) -> Adapter:
    """FLoRA on every kernel matched by ``targets``.

    ``rank``: core size along channel modes, ``kernel_rank``: along conv spatial modes (both
    clipped to the mode size, but a dense kernel's matrix, a 2-D kernel or any kernel's matrix
    view, refuses a rank above min(fan_in, fan_out), as LoRA does). ``tucker``: "nd"
    decomposes every kernel axis, "matrix" flattens non-conv kernels to (fan_in, fan_out)
    (paper parity for DenseGeneral attention kernels).
    ``scale``: s in dW = s · G ×1 U1 … ×N UN (non-zero, finite).
    ``layer_ranks``: {kernel-path regex: per-mode ranks} overriding the defaults. ``grads``:
    "auto", "activation", "weight" or "pallas" (module docstring). ``exclude``: patterns of
    kernels that ``targets`` matches but that stay frozen. ``stacked``, ``out_axes``: how to read
    the kernels (``peft_core.layers.find_layers``). ``dtype``: the core's and factors' dtype;
    their update is formed in f32 at least (``peft_core.adapter.delta_dtype``).
    """
    if not (positive_int(rank) and positive_int(kernel_rank)):
        raise ValueError(
            f"FLoRA ranks must be ints >= 1, got rank={rank!r}, kernel_rank={kernel_rank!r}"
        )
    if tucker not in TUCKER_VIEWS:
        raise ValueError(f"tucker must be one of {TUCKER_VIEWS}, got {tucker!r}")
    if not finite_nonzero(scale):
        raise ValueError(
            f"FLoRA scale must be a finite non-zero number, got {scale!r}: 0 makes every update "
            "and gradient zero, NaN or inf every kernel non-finite"
        )
    check_float_dtype(dtype, what="FLoRA dtype")

    def layers(params: Params) -> list[tuple[Layer, TuckerModes]]:
        found = find_layers(params, targets, exclude=exclude, stacked=stacked, out_axes=out_axes)
        if layer_ranks:
            try:
                select([layer.kernel_path for layer in found], tuple(layer_ranks))
            except ValueError as e:
                raise ValueError(f"layer_ranks: {e} (among the targeted kernels)") from e
        out = [
            (
                layer,
                tucker_modes(
                    layer,
                    tucker=tucker,
                    rank=rank,
                    kernel_rank=kernel_rank,
                    layer_ranks=layer_ranks,
                ),
            )
            for layer in found
        ]
        keys = {layer.name: _keys(modes) for layer, modes in out}
        check_tensor_paths(keys, what="FLoRA")
        return out

    def init(rng: jax.Array, params: Params) -> AParams:
        found = layers(params)
        shapes = [
            (*layer.stack_shape, size, r)
            for layer, modes in found
            for size, r in zip(modes.sizes, modes.ranks, strict=True)
        ]
        normals = iter(_standard_normals(rng, shapes))
        out = {}
        for layer, modes in found:
            entry = {_CORE: jnp.zeros((*layer.stack_shape, *modes.ranks), dtype)}
            for n, r in enumerate(modes.ranks):
                entry[_factor_key(n)] = (next(normals) / math.sqrt(2 * r)).astype(dtype)
            out[layer.name] = entry
        return out

    def checked(params: Params, aparams: AParams) -> dict[str, Any]:
        """aparams, flat, once they fit ``init``'s tree (layer names hold '/': nested and
        '/'-keyed trees alike)."""
        check_tree(jax.eval_shape(init, jax.random.key(0), params), aparams, what="FLoRA params")
        return flatten(aparams)

    def apply(params: Params, aparams: AParams, cfg: Config = None) -> Params:
        no_config("flora", cfg)
        found = layers(params)
        flat = checked(params, aparams)
        delta_fn = lambda core, *factors: scale * tucker_product(core, factors)
        updates = {}

        deltas = over_layers(
            delta_fn,
            [_update_params(params, flat, layer, modes) for layer, modes in found],
            [len(layer.stack_shape) for layer, _ in found],
        )
        for (layer, _), delta in zip(found, deltas, strict=True):
            w = get_leaf(params, layer.kernel_path)
            updates[layer.kernel_path] = add_delta(w, delta.reshape(layer.kernel_shape))
        return replace_leaves(params, updates)

    def factors(
        params: Params, aparams: AParams, keep: Callable[[Layer], bool]
    ) -> dict[str, tuple[jax.Array, jax.Array]]:
        """(U, V) per kept kernel, U V = its update (``matrix_factors``, the core's side times
        scale). The core's side is a product (on ViT-B: G Bᵀ, (r, r) x (r, fan_out)), formed
        batched over same-shaped layers (``over_layers``): per layer it would be one launch
        and two more in the backward; the other side, a factor or a Kronecker product of
        factors, is formed per layer (batching it would stack its gradients for nothing)."""
        flat = checked(params, aparams)
        kept = [(layer, modes) for layer, modes in layers(params) if keep(layer)]
        sides = [_matrix_sides(params, flat, layer, modes) for layer, modes in kept]
        cores: list[Any] = [None] * len(kept)
        for on_input in {side.on_input for side in sides}:
            group = [i for i, side in enumerate(sides) if side.on_input == on_input]
            batched = over_layers(
                functools.partial(_scaled_core_side, scale, on_input),
                [sides[i].core_args for i in group],
                [len(kept[i][0].stack_shape) for i in group],
            )
            for i, core in zip(group, batched, strict=True):
                cores[i] = core
        return {
            layer.kernel_path: (core, side.plain) if side.on_input else (side.plain, core)
            for (layer, _), side, core in zip(kept, sides, cores, strict=True)
        }

    return Adapter(init, apply, apply, train=train_view(grads, apply, factors, what="FLoRA"))


class _MatrixSides(NamedTuple):
    """One layer's U V split (``flora_jax.tucker.matrix_factors``): whether the core is on the
    input side, the core's side's arguments (G, its side's factors) for ``core_side``, and the
    other side (``kronecker_side``), formed."""

    on_input: bool
    core_args: tuple[jax.Array, ...]
    plain: jax.Array


def _matrix_sides(
    params: Params, flat: Mapping[str, jax.Array], layer: Layer, modes: TuckerModes
) -> _MatrixSides:
    core, *us = _update_params(params, flat, layer, modes)
    # modes: the kernel's axes ("nd", input axes first) or its (fan_in, fan_out) matrix
    num_in = len(layer.in_shape) if len(modes.sizes) > 2 else 1
    on_input = core_on_input(modes.ranks, num_in)
    ins, outs = us[:num_in], us[num_in:]
    core_us, plain_us = (ins, outs) if on_input else (outs, ins)
    return _MatrixSides(on_input, (core, *core_us), kronecker_side(plain_us, output=on_input))


def _scaled_core_side(
    scale: float, on_input: bool, core: jax.Array, *factors: jax.Array
) -> jax.Array:
    """scale times ``core_side``: the update's scale rides on the core's side of U V."""
    return scale * core_side(core, factors, on_input)


def _keys(modes: TuckerModes) -> list[str]:
    """A layer's param keys: its core's, then its factors' in mode order."""
    return [_CORE, *(_factor_key(n) for n in range(len(modes.sizes)))]


def _layer_params(flat: Mapping[str, jax.Array], layer: Layer, modes: TuckerModes) -> tuple:
    """(G, U1, ..., UN) of one layer from the flat adapter params."""
    return tuple(flat[f"{layer.name}/{key}"] for key in _keys(modes))


def _update_params(
    params: Params, flat: Mapping[str, jax.Array], layer: Layer, modes: TuckerModes
) -> tuple[jax.Array, ...]:
    """(G, U1, ..., UN) of one layer in the dtype its update is formed in (``delta_dtype``)."""
    tensors = _layer_params(flat, layer, modes)
    kernel = get_leaf(params, layer.kernel_path)
    dtype = delta_dtype(kernel.dtype, *(t.dtype for t in tensors))
    return tuple(t.astype(dtype) for t in tensors)


def _standard_normals(rng: jax.Array, shapes: list[tuple[int, ...]]) -> list[jax.Array]:
    """Independent float32 N(0, 1) arrays of the given shapes, cut from one draw: one random
    kernel per factor makes ``jax.jit(init)`` of a deep model compile for minutes."""
    if not shapes:
        return []
    sizes = [math.prod(shape) for shape in shapes]
    flat = jax.random.normal(rng, (sum(sizes),), jnp.float32)
    pieces = jnp.split(flat, np.cumsum(sizes)[:-1])
    return [piece.reshape(shape) for piece, shape in zip(pieces, shapes, strict=True)]
