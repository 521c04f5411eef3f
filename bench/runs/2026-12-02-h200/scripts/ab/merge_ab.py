"""A/B record (not project code): the tap's skinny products x U and dy V^T with f32 outputs
(before, ``TAP_OUT=f32``) or in x's dtype (the code as checked out), so that XLA's dot merger
(--xla_gpu_dot_merger_threshold_mb) may fold them into the layer's own GEMMs.

    TAP_OUT=f32 python merge_ab.py --json out.json --suites train --train-batches 256 --only ...
"""

import os
import sys

import jax
import jax.numpy as jnp

from bench import jax_suite
from peft_core import activation_grads as ag


def _old_bwd(res, dy):
    x, u, v = res
    f32, dtype = jnp.float32, x.dtype
    dy = dy.astype(dtype)
    h = jnp.dot(x, u.astype(dtype), preferred_element_type=f32).astype(dtype)
    g = jnp.dot(dy, v.astype(dtype).T, preferred_element_type=f32).astype(dtype)
    du = jnp.einsum("mi,mr->ir", x, g, preferred_element_type=f32)
    dv = jnp.einsum("mr,mo->ro", h, dy, preferred_element_type=f32)
    return None, du.astype(u.dtype), dv.astype(v.dtype)


if os.environ.get("TAP_OUT") == "f32":
    ag.gradient_tap.defvjp(ag._tap_fwd, _old_bwd)
print("tap outputs:", os.environ.get("TAP_OUT", "x dtype"), "XLA_FLAGS:", os.environ.get("XLA_FLAGS"), flush=True)
sys.exit(jax_suite.main(sys.argv[1:]))
