"""LoRA (Hu et al.): dW = (alpha / r) * A @ B on the matrix view (fan_in, fan_out) of a kernel.

aparams mirror the param tree: ``{...module path...: {"a": A, "b": B}}``.

A (fan_in, r) is kaiming-uniform(a=sqrt(5)) as in HF PEFT, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in));
B (r, fan_out) is zero, so the adapted model equals the base model at init.

``grads``: how the train step forms dA, dB. "activation": on dense kernels (at most two input
axes: Dense, DenseGeneral) from the layers' inputs x and output gradients dy,
dA = s xᵀ (dy Bᵀ), dB = s (x A)ᵀ dy (``peft_core.activation_grads``), never forming the layer's
(fan_in, fan_out) gradient; convolutions in weight space. "weight": every layer through
W_eff = W0 + s A B, which forms the full dL/dW_eff. "auto" (default): activation space on the
dense layers wide enough for it to pay (``activation_grads.held``) in calls with enough rows
(``activation_grads.taps_activations``), the weight gradient elsewhere, each tap reading the
wider of x and dy once on an H200 or H100 with many rows (``activation_grads.reads_once``).
"pallas": as "auto", each tap reading it once (``peft_core.one_read``; GPU or CPU, not TPU).
Equal gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

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
    over_stack,
    positive_int,
    replace_leaves,
)
from peft_core.layers import Layer, check_tensor_paths, find_layers
from peft_core.paths import Params, Patterns, flatten, get_leaf, unflatten
from peft_core.targets import DENSE_TARGETS


def lora(
    rank: int,
    *,
    alpha: float | None = None,
    targets: Patterns = DENSE_TARGETS,
    exclude: Patterns | None = None,
    stacked: Patterns | None = None,
    out_axes: Mapping[str, int] | None = None,
    dtype: Any = jnp.float32,
    grads: str = "auto",
) -> Adapter:
    """LoRA of ``rank`` on every kernel matched by ``targets``, scaled by alpha/rank (default 1).

    ``stacked``, ``out_axes``: how to read the kernels (``peft_core.layers.find_layers``).
    ``dtype``: A's and B's; their update is formed in f32 at least (``delta_dtype``)."""
    if not positive_int(rank):
        raise ValueError(f"LoRA rank must be an int >= 1, got {rank!r}")
    if alpha is not None and not finite_nonzero(alpha):
        raise ValueError(
            f"LoRA alpha must be a finite non-zero number (or None: rank), got {alpha!r}: 0 makes "
            "every update zero, NaN or inf every kernel non-finite"
        )
    check_float_dtype(dtype, what="LoRA dtype")
    scale = (rank if alpha is None else alpha) / rank

    def layers(params: Params) -> list[Layer]:
        found = find_layers(params, targets, exclude=exclude, stacked=stacked, out_axes=out_axes)
        check_tensor_paths({layer.name: ("a", "b") for layer in found}, what="LoRA")
        for layer in found:
            if rank > min(layer.fan_in, layer.fan_out):
                raise ValueError(
                    f"LoRA rank {rank} exceeds min(fan_in, fan_out) = "
                    f"{min(layer.fan_in, layer.fan_out)} of {layer.kernel_path} "
                    f"{layer.kernel_shape}"
                )
        return found

    def init(rng: jax.Array, params: Params) -> AParams:
        found = layers(params)
        flat = {}
        for layer, key in zip(found, jax.random.split(rng, len(found)), strict=True):
            bound = 1.0 / jnp.sqrt(layer.fan_in)
            shape_a = (*layer.stack_shape, layer.fan_in, rank)
            flat[f"{layer.name}/a"] = jax.random.uniform(key, shape_a, dtype, -bound, bound)
            flat[f"{layer.name}/b"] = jnp.zeros((*layer.stack_shape, rank, layer.fan_out), dtype)
        return unflatten(flat)

    def checked(params: Params, aparams: AParams) -> dict[str, Any]:
        """aparams, flat, once they fit ``init``'s tree."""
        check_tree(jax.eval_shape(init, jax.random.key(0), params), aparams, what="LoRA params")
        return flatten(aparams)

    def pair(params: Params, flat: dict[str, Any], layer: Layer) -> tuple[jax.Array, jax.Array]:
        """(A, B) of ``layer`` in the dtype its update is formed in (``delta_dtype``)."""
        a, b = flat[f"{layer.name}/a"], flat[f"{layer.name}/b"]
        dtype = delta_dtype(get_leaf(params, layer.kernel_path).dtype, a.dtype, b.dtype)
        return a.astype(dtype), b.astype(dtype)

    def apply(params: Params, aparams: AParams, cfg: Config = None) -> Params:
        no_config("lora", cfg)
        found = layers(params)
        flat = checked(params, aparams)
        updates = {}
        for layer in found:  # per layer: batched over layers was ~3% slower (docs/benchmarks.md)
            w = get_leaf(params, layer.kernel_path)
            product = over_stack(lambda a, b: scale * (a @ b), len(layer.stack_shape))
            delta = product(*pair(params, flat, layer))
            updates[layer.kernel_path] = add_delta(w, delta.reshape(layer.kernel_shape))
        return replace_leaves(params, updates)

    def factors(
        params: Params, aparams: AParams, keep: Callable[[Layer], bool]
    ) -> dict[str, tuple[jax.Array, jax.Array]]:
        flat = checked(params, aparams)
        pairs = {
            layer.kernel_path: pair(params, flat, layer) for layer in layers(params) if keep(layer)
        }
        return {path: (scale * a, b) for path, (a, b) in pairs.items()}

    return Adapter(init, apply, apply, train=train_view(grads, apply, factors, what="LoRA"))
