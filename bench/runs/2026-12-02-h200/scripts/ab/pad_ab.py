"""A/B prototype (not project code; run in call 26 as ``step_ab.py``'s ``PAD_TO``: cuDNN refused 197): the ViT's token padding for cuDNN
attention set by ``PAD_TO`` (the code pads 197 -> 208, a multiple of 16; ``PAD_TO=1`` runs cuDNN
on the 197 tokens as they are, if this jax/cuDNN accepts that length). Every matmul runs on the
padded rows, so 197 instead of 208 would be 5.3% fewer GEMM rows. Rows that cuDNN refuses fail
with its error and the others go on.

    PAD_TO=1 python bench/runs/2026-12-02-h200/scripts/ab/pad_ab.py --json out.json \\
        --suites train --train-batches 256 --only '^jax/train/(biases-only|lora-r8)@256$'
"""
import os
import sys

from experiments.models import vit

PAD_TO = int(os.environ.get("PAD_TO", "16"))
vit.resolve_pad_to = lambda implementation, pad_to: PAD_TO if implementation == "cudnn" else 1

if __name__ == "__main__":
    from bench import jax_suite

    print(f"PAD_TO={PAD_TO}", flush=True)
    sys.exit(jax_suite.main(sys.argv[1:]))
