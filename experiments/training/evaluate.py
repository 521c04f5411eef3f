"""Accuracy of an adapted model, for one cfg or for a batch of GLoRA configs at once.

Batches are ``experiments.data.pipeline.EvalBatch``: a fixed size (one compiled shape), the last
one zero-padded with ``mask`` False there, so that

    accuracy = sum(mask * (argmax forward(eff, images) == labels)) / sum(mask),
    eff      = adapter.apply(params, aparams, cfg).

A split lives on the devices stacked (num_batches, B, ...) (``stack_eval_batches``) and
is scored by one jitted ``lax.scan`` over its batches: ``make_accuracy_fn`` for one cfg (the test
split), the config scorer for many configs at once (val200, one ``jax.vmap`` over configs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from experiments.data.pipeline import EvalBatch, padded_batches
from experiments.placement import put_global
from experiments.training.sharding import DATA_AXIS, batch_sharded, data_mesh
from experiments.training.step import Forward
from peft_core import Adapter
from peft_core.paths import Params

#: (params, aparams, cfg, stacked batches) -> accuracy in [0, 1]
AccuracyFn = Callable[[Params, Any, Any, EvalBatch], float]
#: (plain params, stacked batches) -> accuracy in [0, 1]
ParamsAccuracyFn = Callable[[Params, EvalBatch], float]
#: (params, aparams, cfgs stacked (B, ...), stacked batches) -> correct examples (B,) int32
MultiConfigCountFn = Callable[[Params, Any, Any, EvalBatch], jax.Array]
#: cfgs stacked on a leading axis (B, ...) -> accuracies (B,)
ConfigScorer = Callable[[Any], np.ndarray]


def stack_eval_batches(
    images: Any, labels: Any, *, batch_size: int, mesh: Mesh | None = None
) -> EvalBatch:
    """A whole split as padded batches stacked (num_batches, B, ...), on the devices.

    Each batch is split over the mesh's "data" axis, so B is a multiple of its size (padding is
    masked out of every count) and any batch size serves any number of devices. B is
    :func:`split_batch_size`: at most ``batch_size``, evened out over the fewest batches, so
    200 examples at batch size 256 are one batch of 200, not 256, and 300 are two of 150.
    """
    mesh = data_mesh() if mesh is None else mesh
    batch_size = split_batch_size(len(labels), batch_size, mesh.shape[DATA_AXIS])
    batches = list(padded_batches(np.asarray(images), np.asarray(labels), batch_size=batch_size))
    stacked = EvalBatch(*(np.stack(parts) for parts in zip(*batches, strict=True)))
    placed: EvalBatch = put_global(stacked, batch_sharded(mesh, batch_axis=1))
    return placed


def split_batch_size(num_examples: int, batch_size: int, devices: int) -> int:
    """The batch size :func:`stack_eval_batches` gives a split: the smallest multiple of
    ``devices`` that covers ``num_examples`` in as few batches as ``batch_size`` (rounded up to
    that multiple) would. ValueError for an empty split or a batch_size below 1."""
    if num_examples <= 0:
        raise ValueError("cannot evaluate on an empty split")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    cap = _ceil_div(batch_size, devices) * devices
    num_batches = _ceil_div(num_examples, cap)
    return _ceil_div(_ceil_div(num_examples, num_batches), devices) * devices


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@jax.jit
def _count_mask(mask: jax.Array) -> jax.Array:
    return jnp.sum(mask, dtype=jnp.int32)


def num_scored(batches: EvalBatch) -> int:
    """The unpadded examples of stacked batches (what an accuracy divides by); ValueError if
    none. Summed on the devices: a mask spread over several processes has no host copy."""
    total = int(_count_mask(batches.mask))
    if total == 0:
        raise ValueError("cannot evaluate on an empty split")
    return total


def count_correct(forward: Forward, eff: Params, batch: EvalBatch) -> jax.Array:
    """Correctly classified unpadded examples of one batch: int32 scalar. Traceable."""
    logits = forward(eff, batch.images, train=False, rng=jax.random.key(0))
    hits = (jnp.argmax(logits, axis=-1) == batch.labels) & batch.mask
    return jnp.sum(hits, dtype=jnp.int32)


def count_correct_stacked(forward: Forward, eff: Params, batches: EvalBatch) -> jax.Array:
    """Correct unpadded examples over stacked batches (num_batches, batch_size, ...): one
    ``lax.scan`` of :func:`count_correct`, int32 scalar. Traceable."""

    def add(correct: jax.Array, batch: EvalBatch) -> tuple[jax.Array, None]:
        return correct + count_correct(forward, eff, batch), None

    correct, _ = jax.lax.scan(add, jnp.zeros((), jnp.int32), batches)
    return correct


def make_params_accuracy_fn(*, forward: Forward) -> ParamsAccuracyFn:
    """``accuracy(eff, stacked batches) -> float`` of plain params: one jitted scan, compiled
    once per params tree and split shape, so an adapted and a merged model of the same tree
    share it."""

    @jax.jit
    def count(eff: Params, batches: EvalBatch) -> jax.Array:
        return count_correct_stacked(forward, eff, batches)

    def accuracy(eff: Params, batches: EvalBatch) -> float:
        total = num_scored(batches)
        return int(count(eff, batches)) / total

    return accuracy


def make_accuracy_fn(*, forward: Forward, adapter: Adapter) -> AccuracyFn:
    """``accuracy(params, aparams, cfg, stacked batches) -> float``: the effective params
    ``adapter.apply(params, aparams, cfg)`` (jitted), then :func:`make_params_accuracy_fn`'s
    scan over the batches from ``stack_eval_batches``."""
    effective = jax.jit(adapter.apply)
    accuracy_of = make_params_accuracy_fn(forward=forward)

    def accuracy(params: Params, aparams: Any, cfg: Any, batches: EvalBatch) -> float:
        return accuracy_of(effective(params, aparams, cfg), batches)

    return accuracy


def make_multi_config_count_fn(*, forward: Forward, adapter: Adapter) -> MultiConfigCountFn:
    """Jitted ``(params, aparams, cfgs, stacked batches) -> correct examples (B,)`` for B cfgs
    (int32; over ``num_scored(batches)``, the accuracies, exact in float64 on the host)."""

    def one(params: Params, aparams: Any, cfg: Any, batches: EvalBatch) -> jax.Array:
        eff = adapter.apply(params, aparams, cfg)
        return count_correct_stacked(forward, eff, batches)

    return jax.jit(jax.vmap(one, in_axes=(None, None, 0, None)))


def make_config_scorer(
    *,
    forward: Forward,
    adapter: Adapter,
    params: Params,
    aparams: Any,
    batches: EvalBatch,
    configs_per_call: int = 8,
) -> ConfigScorer:
    """``score(cfgs) -> np.ndarray (B,)``: the accuracy of each of B stacked configs.

    batches: from ``stack_eval_batches`` (e.g. val200). Configs run ``configs_per_call`` at a
    time through one compiled vmap (the last chunk padded with copies of the last config, their
    scores dropped). Each config in flight holds its own effective params: lower
    ``configs_per_call`` to save memory. Where the adapter's space is searchable (``to_genes``,
    as GLoRA's), the cfgs are checked against it first: in the vmap they are traced, and an
    option index out of range (or illegal) would silently score the subnet without it.
    """
    if configs_per_call < 1:
        raise ValueError(f"configs_per_call must be >= 1, got {configs_per_call}")
    per_chunk = make_multi_config_count_fn(forward=forward, adapter=adapter)
    total = num_scored(batches)
    space = None if adapter.space is None else adapter.space(params)
    check = getattr(space, "to_genes", None)

    def score(cfgs: Any) -> np.ndarray:
        sizes = {np.shape(x)[:1] for x in jax.tree.leaves(cfgs)}
        if len(sizes) != 1 or () in sizes:
            raise ValueError(f"cfgs must share one leading (batch) axis, got sizes {sizes}")
        if check is not None:
            check(cfgs)  # raises ValueError naming a slice whose option does not fit the space
        ((num_cfgs,),) = sizes
        if num_cfgs == 0:  # nothing to score (numpy's concatenate would fail on no chunk)
            return np.zeros(0)
        num_chunks = -(-num_cfgs // configs_per_call)
        index = np.minimum(np.arange(num_chunks * configs_per_call), num_cfgs - 1)
        scores = [
            per_chunk(params, aparams, jax.tree.map(lambda x, ix=ix: x[ix], cfgs), batches)
            for ix in index.reshape(num_chunks, configs_per_call)
        ]
        return np.concatenate(jax.device_get(scores))[:num_cfgs] / total

    return score
