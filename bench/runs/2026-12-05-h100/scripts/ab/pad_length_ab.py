"""A/B record (not project code): bench.jax_suite with the ViT's cuDNN token padding forced to a
multiple of ``PAD_TO`` (2: 197 -> 198, the code before b91cebb at every batch; 8: 200), for
b91cebb and later, where the ViT calls ``attention.padded_length``. (``pad_ab.py`` patches
``vit.resolve_pad_to``, which b91cebb removed: there it changes nothing.) The script stops if the
ViT no longer calls ``padded_length`` and prints the length it forces at batch 64.

    PAD_TO=2 python bench/runs/2026-12-05-h100/scripts/ab/pad_length_ab.py --json out.json \\
        --suites train --train-batches 128 --only '^jax/train/(lora-r8|flora-r8)@128$'
"""
import os
import sys

from bench import jax_suite
from experiments.models import vit

PAD_TO = int(os.environ.get("PAD_TO", "2"))
if not hasattr(vit, "padded_length"):
    sys.exit("experiments.models.vit no longer calls padded_length: this A/B would change nothing")
_code = vit.padded_length


def forced(num_tokens, implementation, pad_to, local_batch=None):
    given = PAD_TO if implementation == "cudnn" else pad_to
    return _code(num_tokens, implementation, given, local_batch)


vit.padded_length = forced

if __name__ == "__main__":
    print(f"PAD_TO={PAD_TO}: 197 tokens -> {vit.padded_length(197, 'cudnn', None, 64)}", flush=True)
    sys.exit(jax_suite.main(sys.argv[1:]))
