"""A/B record (not project code), a diagnostic: how much of the step the MLP's GELU passes
cost, i.e. the most that moving them into the fc1 / fc2 GEMMs' epilogues could ever save.
GELU_PASS chooses what the model's GELU does (the shapes, residuals and every other op stay):

    cur     the committed GELU: forward gelu(h), backward g * gelu'(h)        (the control)
    nobwd   forward gelu(h), backward g unchanged (no gelu' pass; h not kept)   wrong gradients
    nofwd   forward h unchanged (no forward pass), backward g * gelu'(h)        wrong values
    none    identity both ways                                                  wrong both

    GELU_PASS=none python gelu_bound_ab.py --json out.json --suites train --only 'lora-r8@256$'
"""

import os
import sys

import jax

from bench import jax_suite
from experiments.models import activations, vit

mode = os.environ["GELU_PASS"]
if mode not in ("cur", "nobwd", "nofwd", "none"):
    raise SystemExit(f"GELU_PASS must be cur, nobwd, nofwd or none, got {mode!r}")


@jax.custom_vjp
def nobwd(x):
    return activations.gelu(x, True)


nobwd.defvjp(lambda x: (activations.gelu(x, True), None), lambda _, g: (g,))


@jax.custom_vjp
def nofwd(x):
    return x


nofwd.defvjp(lambda x: (x, x), lambda x, g: ((g * activations.gelu_derivative(x, True)).astype(x.dtype),))

forms = {
    "nobwd": lambda x, approximate=True: nobwd(x),
    "nofwd": lambda x, approximate=True: nofwd(x),
    "none": lambda x, approximate=True: x,
}
if mode != "cur":
    vit.gelu = forms[mode]
print("GELU_PASS:", mode, flush=True)
sys.exit(jax_suite.main(sys.argv[1:]))
