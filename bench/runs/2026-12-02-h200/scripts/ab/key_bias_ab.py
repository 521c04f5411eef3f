"""A/B record (not project code): the attention's key projection with its bias added again
(KEY_BIAS=add, the code before this change) or left out (KEY_BIAS=skip, the code as committed):

    KEY_BIAS=add python key_bias_ab.py --json out.json --suites train --only 'lora-r8@256$'
"""

import os
import sys

from bench import jax_suite
from experiments.models import attention

mode = os.environ["KEY_BIAS"]
if mode not in ("add", "skip"):
    raise SystemExit(f"KEY_BIAS must be add or skip, got {mode!r}")
if mode == "add":
    committed = attention.Dense

    def dense_adding_every_bias(*args, skip_bias=False, **kwargs):
        return committed(*args, skip_bias=False, **kwargs)

    attention.Dense = dense_adding_every_bias
print("KEY_BIAS:", mode, flush=True)
sys.exit(jax_suite.main(sys.argv[1:]))
