"""A/B record (not project code): ``BIAS=autodiff`` puts back autodiff's bias gradient (the plain
``y + bias``) in experiments.models.dense and vit's patch embedding; ``BIAS=gemv`` runs the code.

    BIAS=autodiff python bias_gemv_ab.py --json out.json --suites train --train-batches 256
"""
import os
import sys

from experiments.models import dense, vit

MODE = os.environ.get("BIAS", "gemv")
if MODE == "autodiff":
    dense.add_bias = vit.add_bias = lambda y, bias: y + bias

if __name__ == "__main__":
    from bench import jax_suite

    print(f"BIAS={MODE}", flush=True)
    sys.exit(jax_suite.main(sys.argv[1:]))
