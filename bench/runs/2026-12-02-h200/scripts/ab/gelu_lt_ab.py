"""A/B record (not project code): the MLP GELU's forward value written as jax.nn.gelu's tanh
pattern (GELU_FWD=tanh), which XLA's GEMM rewriter can fold with the fc1 bias into a cuBLASLt
epilogue under --xla_gpu_enable_cublaslt=true, or as committed (GELU_FWD=exp). The backward pass
is the committed one in both (gelu'(h) from the saved input h):

    GELU_FWD=tanh python gelu_lt_ab.py suite --json out.json --suites train --only 'lora-r8@256$'
    GELU_FWD=tanh python gelu_lt_ab.py profile --cases lora-r8 --batch 256 --out prof
"""

import os
import sys

import jax

from experiments.models import activations

mode = os.environ["GELU_FWD"]
if mode not in ("exp", "tanh"):
    raise SystemExit(f"GELU_FWD must be exp or tanh, got {mode!r}")
committed = activations._gelu_value


def tanh_value(x: jax.Array, approximate: bool) -> jax.Array:
    return jax.nn.gelu(x, approximate=True) if approximate else committed(x, approximate)


if mode == "tanh":
    activations._gelu_value = tanh_value
print("GELU_FWD:", mode, "XLA_FLAGS:", os.environ.get("XLA_FLAGS", ""), flush=True)
what, argv = sys.argv[1], sys.argv[2:]
if what == "suite":
    from bench import jax_suite

    sys.exit(jax_suite.main(argv))
from bench import profile

sys.exit(profile.main(argv))
