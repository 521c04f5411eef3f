"""The two non-PEFT baselines in the adapter protocol.

- ``full()``: aparams is a zero-initialised delta on every leaf matched (default: all), in the
  leaf's dtype promoted to f32 at least, so full fine-tuning trains exactly the same quantities
  through the same trainer. One difference from AdamW on the weights themselves (torch): the
  decoupled weight decay shrinks the delta, pulling W toward its pretrained W0, not toward 0.
  Torch's decay would scale W by about 1 - wd * (sum of the lr over the run) more: by 1 - 1.5e-4
  in the GLoRA recipe (wd 1e-4, 500 epochs of 12 steps, cosine from a peak lr of 5e-4), by less
  than 2e-5 off 1 in docs/results.md's runs (30 epochs, lr <= 1e-3).
- ``linear_probe()``: no adapter tensors; only the task head (handled by the trainer) trains.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from peft_core.adapter import (
    Adapter,
    AParams,
    Config,
    add_delta,
    check_tree,
    no_config,
    replace_leaves,
    trainable_float,
    update_dtype,
)
from peft_core.paths import Params, Patterns, flatten, select, unflatten


def full(*, targets: Patterns = r".*", exclude: Patterns | None = None) -> Adapter:
    """Full fine-tuning: eff = params + delta on every matched leaf, delta starting at zero."""

    def init(rng: jax.Array, params: Params) -> AParams:
        del rng
        flat = flatten(params)
        chosen = select(flat, targets, exclude=exclude)
        if fixed := [f"{p} ({_kind(flat[p])})" for p in chosen if not _trainable(flat[p])]:
            raise ValueError(
                f"full fine-tuning targets {len(fixed)} leaves that are not float arrays of 16 "
                f"bits or more, which a delta cannot change (it would round away): {fixed[:5]}; "
                "leave them out with exclude="
            )
        return unflatten({p: jnp.zeros_like(flat[p], update_dtype(flat[p].dtype)) for p in chosen})

    def apply(params: Params, aparams: AParams, cfg: Config = None) -> Params:
        no_config("full", cfg)
        check_tree(jax.eval_shape(init, jax.random.key(0), params), aparams, what="full delta")
        flat = flatten(params)
        return replace_leaves(
            params, {p: add_delta(flat[p], d) for p, d in flatten(aparams).items()}
        )

    return Adapter(init, apply, apply)


def _trainable(leaf: object) -> bool:
    return hasattr(leaf, "dtype") and trainable_float(leaf.dtype)


def _kind(leaf: object) -> str:
    """A leaf's dtype, or a Python number's type name."""
    return str(getattr(leaf, "dtype", type(leaf).__name__))


def linear_probe() -> Adapter:
    """No adapter at all: the backbone stays frozen and only the head trains."""

    def init(rng: jax.Array, params: Params) -> AParams:
        del rng, params
        return {}

    def apply(params: Params, aparams: AParams, cfg: Config = None) -> Params:
        no_config("linear_probe", cfg)
        if jax.tree_util.tree_leaves(aparams):
            raise ValueError("linear_probe takes no adapter params (aparams must be {})")
        return params

    return Adapter(init, apply, apply)
