"""A/B record (not project code): the search's vmapped scorer with its config axis named
``glora_jax.supernet.CONFIG_AXIS`` (``SCORER_AXIS=named``: GLoRA's support products then carry
the config axis leading, the layout that made the K=4 supernet step 9% faster) against the code's
unnamed vmap (``SCORER_AXIS=plain``), each a process; the same scores up to float rounding.

    SCORER_AXIS=named python bench/runs/2026-12-05-h100/scripts/ab/scorer_axis_ab.py \\
        --json a.json --suites search
"""
import os
import sys

import jax
import jax.numpy as jnp

from bench import jax_suite
from experiments.training import evaluate
from glora_jax.supernet import CONFIG_AXIS


def named_multi_config_accuracy_fn(*, forward, adapter):
    def one(params, aparams, cfg, batches):
        eff = adapter.apply(params, aparams, cfg)
        return evaluate.count_correct_stacked(forward, eff, batches) / jnp.sum(batches.mask)

    return jax.jit(jax.vmap(one, in_axes=(None, None, 0, None), axis_name=CONFIG_AXIS))


if __name__ == "__main__":
    form = os.environ.get("SCORER_AXIS", "plain")
    print("SCORER_AXIS:", form, flush=True)
    if form == "named":
        evaluate.make_multi_config_accuracy_fn = named_multi_config_accuracy_fn
    elif form != "plain":
        sys.exit(f"SCORER_AXIS must be named or plain, got {form!r}")
    sys.exit(jax_suite.main(sys.argv[1:]))
