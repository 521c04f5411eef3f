"""A/B record (not project code): ConvNeXt's FLoRA rows in the order weight, auto, weight,
auto (the second pair relabelled "-again"), to tell a gap between grads="auto" and
grads="weight" from the order of rows in one process (call 76 ran auto first).

    python conv_order_ab.py --json out.json --suites conv
"""

import dataclasses
import sys

from bench import jax_suite, jax_train

cases = {c.label: c for c in jax_train.CONV_CASES}
weight, auto = cases["flora-r8-weight"], cases["flora-r8"]
jax_train.CONV_CASES = (
    weight, auto,
    dataclasses.replace(weight, label="flora-r8-weight-again"),
    dataclasses.replace(auto, label="flora-r8-again"),
)  # fmt: skip
sys.exit(jax_suite.main(sys.argv[1:]))
