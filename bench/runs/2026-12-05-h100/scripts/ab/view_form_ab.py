"""A/B record (not project code): the train view's held kernels as W0 + U V from the taps'
factors (the code since this session's commit) against ``weight_apply``'s own form of them
(FLoRA: the Tucker product batched over same-shaped layers; the code before), each a process.

    VIEW_FORM=apply python bench/runs/2026-12-05-h100/scripts/ab/view_form_ab.py --json a.json --suites train \\
        --train-batches 64 256 --only '^jax/train/(lora-r8|flora-r8)@(64|256)$'
    VIEW_FORM=factors ...   # the code as committed
"""
import functools
import os
import sys

import jax

from bench import jax_suite
from peft_core import activation_grads as ag
from peft_core.paths import flatten, unflatten


def apply_form_view(weight_apply, factors, grads="activation"):
    def apply(params, aparams, cfg=None):
        pairs = factors(params, aparams, functools.partial(ag.held, grads))
        modules = {path.rsplit("/", 1)[0] for path in pairs}
        held_params = {
            k: jax.lax.stop_gradient(v) if k.rsplit("/", 1)[0] in modules else v
            for k, v in flatten(aparams).items()
        }
        eff = flatten(weight_apply(params, unflatten(held_params), cfg))
        for kernel_path, (u, v) in pairs.items():
            module = kernel_path.rsplit("/", 1)[0]
            eff[f"{module}/{ag.U_KEY}"], eff[f"{module}/{ag.V_KEY}"] = u, v
        return unflatten(eff)

    return ag.TrainView(apply, ag.tapping(grads))


if __name__ == "__main__":
    form = os.environ.get("VIEW_FORM", "factors")
    print("VIEW_FORM:", form, flush=True)
    if form == "apply":
        ag.activation_train_view = apply_form_view
    elif form != "factors":
        sys.exit(f"VIEW_FORM must be apply or factors, got {form!r}")
    sys.exit(jax_suite.main(sys.argv[1:]))
