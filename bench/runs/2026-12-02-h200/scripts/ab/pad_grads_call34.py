"""GPU check of the cuDNN token padding (the ViT's default, an even length) against XLA's
attention on the unpadded sequence: features and the gradients of every param of
mean(features²), ViT-B/16 (197 -> 198 tokens) and DINOv2-S/14 (257 -> 258), random weights,
bf16 compute, batch 4. Relative errors in float32 norms; a bf16 model lands near 1e-2."""
import jax
import jax.numpy as jnp
import numpy as np

from experiments.models.dinov2 import dinov2_s14
from experiments.models.host_init import init_on_host
from experiments.models.vit import vit


def rel(a, b):
    fa = jnp.concatenate([x.astype(jnp.float32).ravel() for x in jax.tree.leaves(a)])
    fb = jnp.concatenate([x.astype(jnp.float32).ravel() for x in jax.tree.leaves(b)])
    return float(jnp.linalg.norm(fa - fb) / jnp.linalg.norm(fb))


images = jax.random.uniform(jax.random.key(1), (4, 224, 224, 3), jnp.float32, -1, 1)
for name, make in [
    ("vit-b16", lambda impl: vit("B", patch=16, dtype=jnp.bfloat16, attn_implementation=impl)),
    ("dinov2-s14", lambda impl: dinov2_s14(dtype=jnp.bfloat16, attn_implementation=impl)),
]:
    params = init_on_host(make("xla"), jax.random.key(0), np.zeros((1, 224, 224, 3), np.float32))
    out = {}
    for impl in ("xla", "cudnn"):
        model = make(impl)
        def loss(p):
            f = model.apply({"params": p}, images)
            return jnp.mean(f.astype(jnp.float32) ** 2), f
        (l, f), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
        out[impl] = (l, f, g)
    (lx, fx, gx), (lc, fc, gc) = out["xla"], out["cudnn"]
    print(f"{name}: loss xla {float(lx):.6f} cudnn {float(lc):.6f}; features rel {rel(fc, fx):.2e}; "
          f"grads rel {rel(gc, gx):.2e}; features shape {fc.shape}", flush=True)
