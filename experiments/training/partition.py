"""The trainable/frozen split: a regex picks the task head out of the model params.

params -> (backbone, head)       backbone: frozen, never given optimiser state
trainable = {"adapter": aparams, "head": master_copy(head)}   (floats in f32 at least)
effective params = adapter.apply(join(backbone, head), aparams, cfg)
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import jax
import jax.numpy as jnp

from experiments.training.config import HEAD_PATTERN
from peft_core import Adapter, adapted_paths, flatten, select, unflatten
from peft_core.adapter import update_dtype
from peft_core.paths import Params, matches

#: The models' new classifier: every leaf under it is zero- or randomly-initialised for the task.
CLASSIFIER = "head/"

Trainable = dict[str, Any]


def split_head(params: Params, head_pattern: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(backbone, head): the leaves whose '/'-path fully matches ``head_pattern`` form the head.

    Raises ValueError (listing the paths) when the pattern matches nothing.
    """
    flat = flatten(params)
    head_paths = set(select(flat, head_pattern))
    backbone = {p: v for p, v in flat.items() if p not in head_paths}
    head = {p: v for p, v in flat.items() if p in head_paths}
    return unflatten(backbone), unflatten(head)


def check_head(params: Params, head_pattern: str, *, adapted: Collection[str]) -> None:
    """ValueError unless ``head_pattern`` takes in the new classifier (every leaf under
    ``head/``: left out, it would stay at its initialisation) and none of the ``adapted`` paths
    (``peft_core.adapted_paths``: trained both ways, and counted as head)."""
    flat = flatten(params)
    head = {p for p in flat if matches(p, head_pattern)}  # matching nothing: the check below
    if left := sorted(p for p in flat if p.startswith(CLASSIFIER) and p not in head):
        raise ValueError(
            f"head_pattern {head_pattern!r} leaves out the new classifier's {left}: it would "
            f"stay at its initialisation (the default pattern is {HEAD_PATTERN!r})"
        )
    check_head_not_adapted(params, head_pattern, adapted=adapted)


def check_head_not_adapted(params: Params, head_pattern: str, *, adapted: Collection[str]) -> None:
    """ValueError where ``head_pattern`` takes in any of the ``adapted`` paths: they would train
    twice (as head and through the adapter) and be counted twice."""
    head = {p for p in flatten(params) if matches(p, head_pattern)}
    if both := sorted(head.intersection(adapted)):
        shown = ", ".join(both[:4]) + (f" and {len(both) - 4} more" if len(both) > 4 else "")
        raise ValueError(
            f"head_pattern {head_pattern!r} takes in leaves the adapter rewrites ({shown}): "
            "they would train fully and be counted as head; match the classifier (and other "
            "leaves no adapter rewrites) only, or leave the head out of the adapter's targets "
            f"(e.g. peft_core.full(exclude={head_pattern!r}))"
        )


def join_head(backbone: Params, head: Params) -> dict[str, Any]:
    """The inverse of ``split_head``: one nested dict with every leaf."""
    flat_backbone, flat_head = flatten(backbone), flatten(head)
    clash = sorted(flat_backbone.keys() & flat_head.keys())
    if clash:
        raise ValueError(f"head and backbone both hold {clash}")
    return unflatten({**flat_backbone, **flat_head})


def init_trainable(
    rng: jax.Array, params: Params, adapter: Adapter, *, head_pattern: str
) -> tuple[dict[str, Any], Trainable]:
    """(frozen backbone, trainable {"adapter", "head"}) with the adapter initialised on params
    and the head as its ``master_copy``.

    The adapter sees the whole param tree (head included); adapters must not target the head,
    e.g. full fine-tuning is ``peft_core.full(exclude=head_pattern)``. ``adapter.init`` runs as
    one jitted function (one compilation instead of one per eager op). ValueError for an adapter
    that rewrites a head leaf (``check_head_not_adapted``).
    """
    backbone, head = split_head(params, head_pattern)
    check_head_not_adapted(params, head_pattern, adapted=adapted_paths(adapter, params))
    return backbone, {"adapter": jax.jit(adapter.init)(rng, params), "head": master_copy(head)}


def master_copy(head: Params) -> Any:
    """``head`` with its floating leaves in f32 at least: what the optimiser updates (in a bf16
    or f16 head most of AdamW's small steps would round away); other leaves as they are."""
    return jax.tree.map(
        lambda x: x.astype(update_dtype(x.dtype)) if jnp.issubdtype(x.dtype, jnp.floating) else x,
        head,
    )


def in_dtypes_of(tree: Any, like: Any) -> Any:
    """``tree`` with each leaf cast to the dtype of ``like``'s leaf at its place (a trained
    ``master_copy`` back in its params' dtypes, each rounded once)."""
    return jax.tree.map(lambda x, ref: x.astype(ref.dtype), tree, like)


def effective_params(adapter: Adapter, backbone: Params, trainable: Trainable, cfg: Any) -> Params:
    """The params the model runs with: ``adapter.apply(backbone + head, aparams, cfg)``."""
    return adapter.apply(join_head(backbone, trainable["head"]), trainable["adapter"], cfg)
