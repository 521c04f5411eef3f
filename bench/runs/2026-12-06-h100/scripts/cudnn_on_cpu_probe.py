"""What jax 0.11.2 with its CUDA plugin does with a cuDNN-attention ViT under JAX_PLATFORMS=cpu."""
import jax
import jax.numpy as jnp
import numpy as np

from experiments.models.vit import vit

images = np.zeros((1, 32, 32, 3), np.float32)
model = vit("Ti", patch=16, depth=2, num_classes=5, dtype=jnp.bfloat16, attn_implementation="cudnn")
rng = jax.random.key(4)
print("backend", jax.default_backend())
for what, fn in [
    ("init jaxpr has cudnn", lambda: "cudnn" in str(jax.make_jaxpr(model.init)(rng, images))),
    ("init lowered has cudnn", lambda: "cudnn" in jax.jit(model.init).lower(rng, images).as_text()),
    ("init runs", lambda: bool(jax.tree.leaves(jax.jit(model.init)(rng, images)))),
]:
    try:
        print(what, "->", fn())
    except Exception as e:  # noqa: BLE001
        print(what, "-> raises", type(e).__name__, str(e).splitlines()[0][:200])
params = vit("Ti", patch=16, depth=2, num_classes=5, dtype=jnp.bfloat16).init(rng, images)
try:
    jax.jit(model.apply)(params, images)
    print("apply runs")
except Exception as e:  # noqa: BLE001
    print("apply -> raises", type(e).__name__, str(e).splitlines()[0][:200])
