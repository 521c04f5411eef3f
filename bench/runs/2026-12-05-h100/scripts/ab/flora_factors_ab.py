"""A/B record (not project code): FLoRA's tap factors (scale * U, V) batched over same-shaped
layers (d8e10bb: every product; since 1cfd178: the core's side only) against one small
product per layer (the code before d8e10bb), each a process.

    FLORA_FACTORS=per-layer python bench/runs/2026-12-05-h100/scripts/ab/flora_factors_ab.py \\
        --json a.json --suites train --train-batches 64 256 --only '^jax/train/flora-r8@(64|256)$'
    FLORA_FACTORS=batched ...   # the code as committed

The per-layer form replaces ``over_layers`` in ``flora_jax.adapter`` (factors and apply): in the
train view every ViT-B layer is tapped at these batches, so apply's products are unused there.
"""
import os
import sys

from bench import jax_suite
from flora_jax import adapter
from peft_core.adapter import over_stack


def per_layer(fn, args, n_stack):
    return [over_stack(fn, n)(*a) for a, n in zip(args, n_stack, strict=True)]


if __name__ == "__main__":
    form = os.environ.get("FLORA_FACTORS", "batched")
    print("FLORA_FACTORS:", form, flush=True)
    if form == "per-layer":
        adapter.over_layers = per_layer
    elif form != "batched":
        sys.exit(f"FLORA_FACTORS must be per-layer or batched, got {form!r}")
    sys.exit(jax_suite.main(sys.argv[1:]))
