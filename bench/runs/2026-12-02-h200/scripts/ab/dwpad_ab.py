"""A/B record (not project code): ConvNeXt's depthwise conv padding, as committed at a4b4cc2
(``DWPAD=padded``: the output padded to kernel + 1 where the map is shorter, then sliced) or
the plain 'SAME' padding of before (``DWPAD=plain``: (3, 3) on both sides of both axes; the
model's slice is then a no-op). Run after call 81 timed ConvNeXt's rows ~9.5 ms slower than
call 78 while its profile (no command buffers) showed ~5.8 ms less device time per step.

    DWPAD=plain python dwpad_ab.py --json out.json --suites conv --only '/flora-r8@'
"""

import os
import sys

from bench import jax_suite
from experiments.models import convnext

MODE = os.environ.get("DWPAD", "padded")
if MODE == "plain":
    half = convnext.DWCONV_SIZE // 2
    convnext.depthwise_padding = lambda spatial, kernel: [(half, half)] * len(spatial)
elif MODE != "padded":
    raise SystemExit(f"DWPAD={MODE!r}: expected 'plain' or 'padded'")

if __name__ == "__main__":
    print("DWPAD:", MODE, flush=True)
    sys.exit(jax_suite.main(sys.argv[1:]))
