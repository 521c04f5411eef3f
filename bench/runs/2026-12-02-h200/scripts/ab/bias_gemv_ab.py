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
if MODE == "flat":  # d bias = sum over rows of dy reshaped (N, F), in f32 (call 46's "flat")
    import functools, math
    import jax, jax.numpy as jnp

    @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
    def _flat(ndim, y, bias):
        return y + bias

    def _bwd(ndim, _, dy):
        features = dy.shape[dy.ndim - ndim :]
        db = jnp.sum(dy.reshape(-1, math.prod(features)).astype(jnp.float32), axis=0)
        return dy, db.astype(dy.dtype).reshape(features)

    _flat.defvjp(lambda ndim, y, bias: (y + bias, None), _bwd)
    dense.add_bias = vit.add_bias = lambda y, bias: _flat(bias.ndim, y, bias)

if __name__ == "__main__":
    from bench import jax_suite

    print(f"BIAS={MODE}", flush=True)
    sys.exit(jax_suite.main(sys.argv[1:]))
