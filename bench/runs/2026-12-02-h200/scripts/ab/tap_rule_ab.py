"""A/B record (not project code): grads="auto" tapping only the dense layers whose kernel path
re.search-es env TAP_LAYERS (the others train in weight space), e.g. MLP only on ViT-B:

    TAP_LAYERS=MlpBlock python tap_rule_ab.py --json out.json --suites train --only 'lora-r8@256$'
"""

import os
import re
import sys

from bench import jax_suite
from peft_core import activation_grads as ag

pattern = os.environ["TAP_LAYERS"]
committed = ag.tapped_by


def tapped_by(grads, layer):
    tapped = committed(grads, layer) and re.search(pattern, layer.kernel_path) is not None
    if grads == "auto" and layer.kernel_path.startswith("Transformer/encoderblock_0/"):
        print("tapped" if tapped else "weight", layer.kernel_path, flush=True)
    return tapped


ag.tapped_by = tapped_by
print("TAP_LAYERS:", pattern, flush=True)
sys.exit(jax_suite.main(sys.argv[1:]))
