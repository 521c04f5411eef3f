"""A/B record (not project code; ``exp32`` became the model's GELU in b501edf, the same ops): bench.jax_suite with the ViT's token padding for cuDNN set by
``PAD_TO`` (the code: 16, i.e. 197 -> 208; ``PAD_TO=1`` runs cuDNN on the 197 tokens as they
are) and its GELU set by ``GELU``: ``cur`` (the model's), ``exp32`` (the same tanh-form GELU
computed as x * sigmoid(2u) with the sigmoid as 1 / (1 + exp(-2u)), u = c (x + 0.044715 x³),
value and derivative in float32; equal to the tanh form to 1e-6 in f32).

    PAD_TO=1 GELU=cur python step_ab.py --json out.json --suites train --train-batches 256 \\
        --only '^jax/train/lora-r8@256$'
"""
import functools
import math
import os
import sys

import jax
import jax.numpy as jnp

from experiments.models import activations, vit

C, A = math.sqrt(2 / math.pi), 0.044715


def _s(x):
    return 1 / (1 + jnp.exp(-2 * C * (x + A * x * x * x)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def gelu_exp32(x, approximate=True):
    xf = x.astype(jnp.float32)
    return (xf * _s(xf)).astype(x.dtype)


def _fwd(x, approximate):
    return gelu_exp32(x, approximate), x


def _bwd(approximate, x, g):
    xf = x.astype(jnp.float32)
    s = _s(xf)
    d = s + xf * s * (1 - s) * (2 * C) * (1 + 3 * A * xf * xf)
    return ((g * d).astype(x.dtype),)


gelu_exp32.defvjp(_fwd, _bwd)

PAD_TO = int(os.environ.get("PAD_TO", "16"))
GELU = os.environ.get("GELU", "cur")
vit.resolve_pad_to = lambda implementation, pad_to: PAD_TO if implementation == "cudnn" else 1
vit.gelu = {"cur": activations.gelu, "exp32": gelu_exp32}[GELU]

if __name__ == "__main__":
    from bench import jax_suite

    print(f"PAD_TO={PAD_TO} GELU={GELU}", flush=True)
    sys.exit(jax_suite.main(sys.argv[1:]))
