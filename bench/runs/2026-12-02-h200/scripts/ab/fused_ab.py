"""A/B record (not project code): the gradient tap's skinny products folded into the layer's own
GEMMs. For every tapped ``experiments.models.dense.Dense`` the interceptor computes the layer
itself (the module's call is skipped):

    forward  (FUSE in fwd, both): x [W | U] -> y = [:, :N], h = x U = [:, N:]   (one GEMM)
    backward (FUSE in bwd, both): dy [Wᵀ | Vᵀ] -> dx = [:, :K], g = dy Vᵀ = [:, K:]
    dU = xᵀ g, dV = hᵀ dy                       (as the committed tap)

so x and dy are each read once less per layer. FUSE=none runs the same interceptor with the
products apart (the committed tap's arithmetic, the layer computed here): the control.

    FUSE=both python fused_ab.py --json out.json --suites train --train-batches 256 --only ...
    FUSE=both python fused_ab.py --check      # gradients against the committed tap, tiny ViT, CPU
"""

import atexit
import math
import os
import sys

import jax
import jax.numpy as jnp

from experiments.models.dense import Dense, add_bias
from peft_core import activation_grads as ag

FUSE = os.environ.get("FUSE", "both")
assert FUSE in ("none", "fwd", "bwd", "both"), FUSE
FWD, BWD = FUSE in ("fwd", "both"), FUSE in ("bwd", "both")
f32 = jnp.float32


@jax.custom_vjp
def fused(x, w, u, v):
    """x (M, K) w (K, N) in the compute dtype, u (K, r), v (r, N): x w (M, N)."""
    return _fwd(x, w, u, v)[0]


def _fwd(x, w, u, v):
    dt, n = x.dtype, w.shape[1]
    if FWD:
        z = jnp.dot(x, jnp.concatenate([w, u.astype(dt)], axis=1))
        y, h = z[:, :n], z[:, n:]
    else:
        y = jnp.dot(x, w)
        h = jnp.dot(x, u.astype(dt), preferred_element_type=f32).astype(dt)
    return y, (x, w, h, u, v)


def _bwd(res, dy):
    x, w, h, u, v = res
    dt, k = x.dtype, w.shape[0]
    dy = dy.astype(dt)
    if BWD:
        c = jnp.concatenate([w, v.astype(dt)], axis=0)  # (K + r, N)
        dz = jax.lax.dot_general(dy, c, (((1,), (1,)), ((), ())))
        dx, g = dz[:, :k], dz[:, k:]
    else:
        dx = jax.lax.dot_general(dy, w, (((1,), (1,)), ((), ())))
        g = jnp.dot(dy, v.astype(dt).T, preferred_element_type=f32).astype(dt)
    du = jnp.einsum("mi,mr->ir", x, g, preferred_element_type=f32)
    dv = jnp.einsum("mr,mo->ro", h, dy, preferred_element_type=f32)
    return dx, None, du.astype(u.dtype), dv.astype(v.dtype)


fused.defvjp(_fwd, _bwd)

_committed = ag._add_tap
FUSED_PATHS: set = set()
atexit.register(lambda: print("layers computed by the fused interceptor:", len(FUSED_PATHS)))


def _fused_tap(next_fun, args, kwargs, context):
    module = context.module
    if (
        context.method_name != "__call__"
        or not module.has_variable("params", ag.U_KEY)
        or not isinstance(module, Dense)
    ):
        return _committed(next_fun, args, kwargs, context)
    FUSED_PATHS.add("/".join(module.path))
    x = args[0]
    u, v = module.get_variable("params", ag.U_KEY), module.get_variable("params", ag.V_KEY)
    kernel = module.get_variable("params", "kernel")
    bias = module.get_variable("params", "bias")
    features = module.features if isinstance(module.features, tuple) else (module.features,)
    n_in = kernel.ndim - len(features)
    fan_in, fan_out = math.prod(kernel.shape[:n_in]), math.prod(features)
    dtype = module.dtype or jnp.result_type(x, kernel)
    x2 = x.reshape(-1, fan_in).astype(dtype)
    y = fused(x2, kernel.reshape(fan_in, fan_out).astype(dtype), u, v)
    y = y.reshape(x.shape[: x.ndim - n_in] + tuple(features))
    return add_bias(y, bias.astype(dtype), module.bias_grad)


def _check():
    """A tiny ViT's LoRA gradients through this interceptor against weight-space LoRA (CPU)."""
    import peft_core
    from experiments.models.vit import vit

    model = vit("Ti", patch=8, depth=2, num_classes=5)
    images = jax.random.normal(jax.random.key(0), (3, 16, 16, 3))
    params = model.init(jax.random.key(1), images)["params"]
    keys = iter(jax.random.split(jax.random.key(7), 1000))
    rnd = lambda t, s: jax.tree.map(lambda x: s * jax.random.normal(next(keys), x.shape), t)
    params = {**params, "head": rnd(params["head"], 1.0)}
    fwd = lambda p, x, **_: model.apply({"params": p}, x)
    ads = {g: peft_core.lora(2, alpha=3.0, grads=g) for g in ("weight", "activation")}
    ap = rnd(ads["weight"].init(jax.random.key(2), params), 0.1)
    view = ads["activation"].train

    def loss(ap, apply, f):
        return jnp.sum(jnp.sin(f(apply(params, ap), images)))

    g = jax.jit(jax.grad(loss), static_argnums=(1, 2))
    want = g(ap, ads["weight"].apply, fwd)
    got = g(ap, view.apply, view.wrap_forward(fwd))
    err = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))), got, want)
    print("FUSE", FUSE, "max rel err", max(jax.tree.leaves(err)), "leaves", len(jax.tree.leaves(err)))


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        ag._add_tap = _fused_tap
        _check()
        sys.exit(0)
    ag._add_tap = _fused_tap
    print("FUSE:", FUSE, "XLA_FLAGS:", os.environ.get("XLA_FLAGS"), flush=True)
    from bench import jax_suite

    sys.exit(jax_suite.main(sys.argv[1:]))
