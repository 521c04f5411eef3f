"""A/B record (not project code): the MLP's GELU backward pass folded into the fc2 input
gradient's GEMM (MLP_BWD=fused: gelu_grad_matmul.py's Mosaic GPU kernel writes
dh = (dy W2ᵀ) * gelu'(h) at once) or as committed (MLP_BWD=cur: XLA's GEMM writes dy W2ᵀ, a
second pass multiplies it by gelu'(h)). Forward values, params and every other op unchanged:

    MLP_BWD=fused python mlp_fused_ab.py --json out.json --suites train --only 'lora-r8@256$'
    MLP_BWD=fused python mlp_fused_ab.py --check     # gradients against the committed model (CPU)
"""

import os
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gelu_grad_matmul import gelu_grad_matmul, gelu_grad_matmul_ws, gelu_prime  # noqa: E402

from experiments.models import vit  # noqa: E402
from experiments.models.activations import gelu  # noqa: E402
from experiments.models.dense import Dense, add_bias  # noqa: E402

mode = os.environ.get("MLP_BWD", "fused")
if mode not in ("fused", "cur"):
    raise SystemExit(f"MLP_BWD must be fused or cur, got {mode!r}")


def _dh(dy, w, h):
    """(dy Wᵀ) * gelu'(h) for dy (M, N), w (K, N), h (M, K)."""
    m = dy.shape[0]
    if jax.default_backend() == "gpu" and m % 128 == 0 and w.shape[0] % 256 == 0 and w.shape[1] % 64 == 0:
        steps = int(os.environ.get("STEPS", "3"))
        if os.environ.get("KERNEL", "ws") == "ws":
            return gelu_grad_matmul_ws(dy, w.T, h, steps=steps, approx=os.environ.get("APPROX") == "1")
        return gelu_grad_matmul(dy, w.T, h, steps=steps)
    return ((dy @ w.T).astype(jnp.float32) * gelu_prime(h.astype(jnp.float32))).astype(h.dtype)


@jax.custom_vjp
def gelu_input_matmul(a, h, w):
    """a (M, K) @ w (K, N) where a = gelu(h): the gradient goes to h (and w), none to a."""
    return a @ w


def _fwd(a, h, w):
    return a @ w, (a, h, w)


def _bwd(res, dy):
    a, h, w = res
    dw = jnp.einsum("mk,mn->kn", a, dy, preferred_element_type=jnp.float32).astype(w.dtype)
    return None, _dh(dy.astype(h.dtype), w, h), dw


gelu_input_matmul.defvjp(_fwd, _bwd)


class GeluInputDense(Dense):
    """Dense_1 of the MLP: x = gelu(pre) (its value only), pre the fc1 output."""

    @nn.compact
    def __call__(self, x, pre=None):
        features = self.features
        kernel = self.param("kernel", nn.initializers.xavier_uniform(), (x.shape[-1], features), self.param_dtype)
        bias = self.param("bias", nn.initializers.normal(stddev=1e-6), (features,), self.param_dtype)
        x, pre, kernel, bias = nn.dtypes.promote_dtype(x, pre, kernel, bias, dtype=self.dtype)
        lead = x.shape[:-1]
        y = gelu_input_matmul(x.reshape(-1, x.shape[-1]), pre.reshape(-1, pre.shape[-1]), kernel)
        return add_bias(y.reshape(*lead, features), bias, self.bias_grad)


class FusedMlpBlock(nn.Module):
    config: vit.ViTConfig

    @nn.compact
    def __call__(self, x):
        cfg = self.config
        h = Dense(cfg.mlp_dim, name="Dense_0", dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                  kernel_init=nn.initializers.xavier_uniform(), bias_init=nn.initializers.normal(stddev=1e-6),
                  bias_grad=cfg.bias_grad)(x)
        a = jax.lax.stop_gradient(gelu(h, cfg.gelu_approximate))
        return GeluInputDense(x.shape[-1], name="Dense_1", dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                              bias_grad=cfg.bias_grad)(a, pre=h)


def check() -> None:
    """Whole-model gradients (ViT-Ti, 2 blocks, f32) of the fused MLP against the committed one."""
    import numpy as np

    model = vit.vit("Ti", patch=16, num_classes=10, depth=2)
    images = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    params = model.init(jax.random.key(1), images)["params"]
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(2), p.shape), params)

    def loss(p):
        return jnp.sum(model.apply({"params": p}, images) ** 2)

    want = jax.grad(loss)(params)
    vit.MlpBlock = FusedMlpBlock
    got = jax.grad(loss)(params)
    worst = max(
        float(np.max(np.abs(g - w)) / (np.max(np.abs(w)) + 1e-30))
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want))
    )
    print("fused MLP: worst relative gradient error", worst)
    assert worst < 1e-4, worst


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        check()
        sys.exit(0)
    from bench import jax_suite

    if mode == "fused":
        vit.MlpBlock = FusedMlpBlock
    print("MLP_BWD:", mode, flush=True)
    sys.exit(jax_suite.main(sys.argv[1:]))
