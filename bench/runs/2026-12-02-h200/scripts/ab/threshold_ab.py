"""A/B record (not project code): grads="auto" with another MIN_TAP_INTENSITY (env THRESHOLD),
e.g. 320 keeps ConvNeXt-T's stage-3 layers (307 FLOP/byte) in weight space and taps stage 4 (614).

    THRESHOLD=320 python threshold_ab.py --json out.json --suites conv --only 'flora-r8(-weight)?@'
"""

import os
import sys

from bench import jax_suite
from peft_core import activation_grads as ag

ag.MIN_TAP_INTENSITY = int(os.environ.get("THRESHOLD", ag.MIN_TAP_INTENSITY))
print("MIN_TAP_INTENSITY:", ag.MIN_TAP_INTENSITY, flush=True)
sys.exit(jax_suite.main(sys.argv[1:]))
