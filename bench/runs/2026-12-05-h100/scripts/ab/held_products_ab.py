"""A/B record (not project code): the train view's held kernels W0 + U V with U V batched over
same-shaped layers (commit d2a2594) against one product per layer (the code before and after:
a wash in call 125, so d2a2594 was reverted), each a process.

    HELD_PRODUCTS=per-layer python bench/runs/2026-12-05-h100/scripts/ab/held_products_ab.py \\
        --json a.json --suites train --train-batches 64 256 \\
        --only '^jax/train/(lora-r8|flora-r8)@(64|256)$'
    HELD_PRODUCTS=batched ...   # the code as committed

The per-layer form replaces ``over_layers`` in ``peft_core.activation_grads`` (used there for
these products only); FLoRA's factors stay batched (``flora_jax.adapter``'s own binding).
"""
import os
import sys

from bench import jax_suite
from peft_core import activation_grads
from peft_core.adapter import over_stack


def per_layer(fn, args, n_stack):
    return [over_stack(fn, n)(*a) for a, n in zip(args, n_stack, strict=True)]


if __name__ == "__main__":
    form = os.environ.get("HELD_PRODUCTS", "batched")
    print("HELD_PRODUCTS:", form, flush=True)
    if form == "per-layer":
        activation_grads.over_layers = per_layer
    elif form != "batched":
        sys.exit(f"HELD_PRODUCTS must be per-layer or batched, got {form!r}")
    sys.exit(jax_suite.main(sys.argv[1:]))
