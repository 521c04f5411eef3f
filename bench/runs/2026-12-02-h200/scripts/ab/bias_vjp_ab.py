"""A/B record (not project code): the bias gradient of every Dense / DenseGeneral formed another
way, to test whether the bias-gradient reductions make XLA keep GLoRA's residual stream batch-minor
(docs/benchmarks.md, call 41). ``BIAS``:

  code   flax's bias add (autodiff: the broadcast's transpose, a reduce over batch and tokens)
  flat   custom VJP: db = sum over rows of g reshaped to (batch * tokens, features), in f32
  ones   custom VJP: db = ones(batch * tokens) @ g reshaped (a GEMV), f32 accumulation
  stop   no bias gradient (stop_gradient; diagnostic only, not the same training)

    BIAS=flat python bias_vjp_ab.py --json out.json --suites train --train-batches 256 \\
        --only '^jax/train/glora-fixed@256$'
"""
import functools
import math
import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

MODE = os.environ.get("BIAS", "code")


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def add_bias(y, b, mode):
    return y + b.reshape((1,) * (y.ndim - b.ndim) + b.shape)


def _bwd_shape(mode, bshape, g):
    width = math.prod(bshape)
    g2 = g.reshape(-1, width)
    if mode == "flat":
        db = jnp.sum(g2.astype(jnp.float32), axis=0)
    else:
        db = jnp.dot(jnp.ones((g2.shape[0],), g.dtype), g2, preferred_element_type=jnp.float32)
    return g, db.reshape(bshape)


def _fwd2(y, b, mode):
    return add_bias(y, b, mode), jnp.zeros(b.shape, b.dtype)


def _bwd2(mode, zeros_b, g):
    g_y, db = _bwd_shape(mode, zeros_b.shape, g)
    return g_y, db.astype(zeros_b.dtype)


add_bias.defvjp(_fwd2, _bwd2)


def biased(y, b):
    if MODE == "code":
        return y + b.reshape((1,) * (y.ndim - b.ndim) + b.shape)
    if MODE == "stop":
        b = jax.lax.stop_gradient(b)
        return y + b.reshape((1,) * (y.ndim - b.ndim) + b.shape)
    return add_bias(y, b, MODE)


def _flat_init(init, n_in_axes):
    def wrapped(rng, shape, dtype=jnp.float32):
        flat = (int(np.prod(shape[:n_in_axes])), int(np.prod(shape[n_in_axes:])))
        return jnp.reshape(init(rng, flat, dtype), shape)

    return wrapped


def _flat_bias(init):
    def wrapped(rng, shape, dtype=jnp.float32):
        return jnp.reshape(init(rng, (int(np.prod(shape)),), dtype), shape)

    return wrapped


class Dense(nn.Dense):
    @nn.compact
    def __call__(self, inputs):
        kernel = self.param("kernel", self.kernel_init, (inputs.shape[-1], self.features),
                            self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        inputs, kernel, bias = nn.dtypes.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        y = jax.lax.dot_general(inputs, kernel, (((inputs.ndim - 1,), (0,)), ((), ())))
        return biased(y, bias)


class DenseGeneral(nn.DenseGeneral):
    @nn.compact
    def __call__(self, inputs):
        features = self.features if isinstance(self.features, tuple) else (self.features,)
        axis = self.axis if isinstance(self.axis, tuple) else (self.axis,)
        axis = tuple(a % inputs.ndim for a in axis)
        kshape = tuple(inputs.shape[a] for a in axis) + features
        kernel = self.param("kernel", _flat_init(self.kernel_init, len(axis)), kshape,
                            self.param_dtype)
        bias = self.param("bias", _flat_bias(self.bias_init),
                          features, self.param_dtype)
        inputs, kernel, bias = nn.dtypes.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        contract = tuple(range(len(axis)))
        y = jax.lax.dot_general(inputs, kernel, ((axis, contract), ((), ())))
        return biased(y, bias)


if MODE != "code":
    nn.Dense = Dense
    nn.DenseGeneral = DenseGeneral

if __name__ == "__main__":
    from bench import jax_suite

    print(f"BIAS={MODE}", flush=True)
    sys.exit(jax_suite.main(sys.argv[1:]))
