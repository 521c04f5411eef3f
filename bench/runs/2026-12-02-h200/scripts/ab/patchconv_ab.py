"""A/B record (not project code): ConvNeXt's stem and downsampling convs as committed after
call 88 (``PATCHCONV=matmul``: ``experiments.models.patch_conv.PatchConv``, one matmul of the
flattened patches) or as before (``PATCHCONV=cudnn``: ``nn.Conv``, stride = kernel, "VALID",
which XLA runs as cuDNN convs and autotunes, the stem's kernel gradient over 67 candidates).
Same params and values either way. Prepared after call 88 (CPU: the tiny ConvNeXt, ``--size
tiny``, trains in both modes); call 90 timed FLoRA at 128 in both (matmul 0.33 ms faster).

    PATCHCONV=cudnn python patchconv_ab.py --json out.json --suites conv --only '/flora-r8@'
"""

import os
import sys

import flax.linen as nn

from bench import jax_suite
from experiments.models import convnext

MODE = os.environ.get("PATCHCONV", "matmul")
if MODE == "cudnn":

    def _conv(self, features, patch, name):
        return nn.Conv(
            features, (patch, patch), strides=patch, padding="VALID",
            kernel_init=convnext._KERNEL_INIT, dtype=self.dtype, name=name,
        )  # fmt: skip

    convnext.ConvNeXt._conv = _conv
elif MODE != "matmul":
    raise SystemExit(f"PATCHCONV={MODE!r}: expected 'cudnn' or 'matmul'")

if __name__ == "__main__":
    print("PATCHCONV:", MODE, flush=True)
    sys.exit(jax_suite.main(sys.argv[1:]))
