"""A/B record (not project code): the exact GELU's forward as committed at 3fbb806
(``GELU_EXACT=erf``: x (1 + erf(x/√2)) / 2 in float32, rounded once) or as before
(``GELU_EXACT=jaxnn``: ``jax.nn.gelu(x, approximate=False)``, which forms -x/√2 in bf16 and
takes a two-branch float32 erfc). The backward pass is the same in both (reads x only).

    GELU_EXACT=jaxnn python gelu_exact_ab.py --json out.json --suites conv --only '/flora-r8@'
"""

import os
import sys

import jax

from bench import jax_suite
from experiments.models import activations

MODE = os.environ.get("GELU_EXACT", "erf")
if MODE == "jaxnn":
    committed = activations._gelu_value

    def _gelu_value(x, approximate):
        return committed(x, True) if approximate else jax.nn.gelu(x, approximate=False)

    activations._gelu_value = _gelu_value
elif MODE != "erf":
    raise SystemExit(f"GELU_EXACT={MODE!r}: expected 'jaxnn' or 'erf'")

if __name__ == "__main__":
    print("GELU_EXACT:", MODE, flush=True)
    sys.exit(jax_suite.main(sys.argv[1:]))
