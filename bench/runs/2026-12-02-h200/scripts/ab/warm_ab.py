"""A/B record (not project code): does a small conv program compiled and run first (its
autotuning loads cuDNN's engines and runs its runtime compilation) keep the stalls out of the
ConvNeXt step's conv autotuning? ``WARM=1``: a tiny ConvNeXt-shaped gradient (stem 4x4/4 conv,
7x7 depthwise conv, 2x2/2 conv; bf16) first; ``WARM=0``: nothing.

    WARM=1 python warm_ab.py --json out.json --suites conv --only '/flora-r8@'
"""

import os
import sys

import jax
import jax.numpy as jnp
from jax import lax

from bench import jax_suite

DIMS = ("NHWC", "HWIO", "NHWC")


def warm_up() -> None:
    def loss(ws, x):
        stem, dw, down = ws
        y = lax.conv_general_dilated(x, stem, (4, 4), "VALID", dimension_numbers=DIMS)
        y = lax.conv_general_dilated(
            y, dw, (1, 1), [(3, 3), (3, 3)], dimension_numbers=DIMS, feature_group_count=y.shape[-1]
        )
        y = lax.conv_general_dilated(y, down, (2, 2), "VALID", dimension_numbers=DIMS)
        return jnp.sum(y.astype(jnp.float32) ** 2)

    k = jax.random.split(jax.random.key(0), 4)
    bf = jnp.bfloat16
    ws = (
        jax.random.normal(k[0], (4, 4, 3, 96), bf),
        jax.random.normal(k[1], (7, 7, 1, 96), bf),
        jax.random.normal(k[2], (2, 2, 96, 192), bf),
    )
    x = jax.random.normal(k[3], (8, 64, 64, 3), bf)
    jax.block_until_ready(jax.jit(jax.grad(loss, argnums=(0, 1)))(ws, x))


if __name__ == "__main__":
    warm = os.environ.get("WARM", "0") == "1"
    print("WARM:", warm, flush=True)
    if warm:
        warm_up()
    sys.exit(jax_suite.main(sys.argv[1:]))
