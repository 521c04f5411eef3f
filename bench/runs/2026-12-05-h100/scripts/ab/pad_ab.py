"""A/B record (not project code): bench.jax_suite with the ViT's token padding for cuDNN set by
``PAD_TO`` (the code: 2, i.e. 197 -> 198; 8 gives 200). At batch 64, 64 x 198 = 12672 rows is
not a multiple of XLA's split-K tiling for the LoRA factor gradients xᵀg (call 127's HLO pads
those operands to 12800 rows, 64 x 200, in every block); 200 tokens would need no such pad.

    PAD_TO=8 python bench/runs/2026-12-05-h100/scripts/ab/pad_ab.py --json out.json \\
        --suites train --train-batches 64 --only '^jax/train/(lora-r8|flora-r8)@64$'

It patches ``vit.resolve_pad_to``, which the ViT calls up to d472b13 (call 129). b91cebb
removed it: in calls 130-131 (at b91cebb) ``PAD_TO`` changed nothing and every row ran the
code's padding (200 tokens at 64 and 128). ``pad_length_ab.py`` is the form for b91cebb on.
"""
import os
import sys

from bench import jax_suite
from experiments.models import vit

PAD_TO = int(os.environ.get("PAD_TO", "2"))
vit.resolve_pad_to = lambda implementation, pad_to: PAD_TO if implementation == "cudnn" else 1

if __name__ == "__main__":
    print(f"PAD_TO={PAD_TO}", flush=True)
    sys.exit(jax_suite.main(sys.argv[1:]))
