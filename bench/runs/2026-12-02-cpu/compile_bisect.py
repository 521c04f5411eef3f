"""CPU: compile seconds of parts of the GLoRA training step (ViT-B, batch 8), all inputs as args.

    JAX_PLATFORMS=cpu PYTHONPATH=. python bench/runs/2026-12-02-cpu/compile_bisect.py  # -> .txt
"""
import time
import jax, jax.numpy as jnp
from bench import jax_train
from bench.models import vit_backbone
from bench.sizes import SIZES
from experiments.methods import MethodConfig, build_method
from experiments.training.partition import effective_params, init_trainable
from experiments.training.step import classification_loss

size = SIZES["full"]
vit = vit_backbone(size, attention="xla")
x = jnp.zeros((8, 224, 224, 3), jnp.uint8); y = jnp.zeros((8,), jnp.int32); rng = jax.random.key(0)

def timed(name, fn, *args):
    low = jax.jit(fn).lower(*args)
    t0 = time.perf_counter(); low.compile()
    print(f"{name}: ops {low.as_text().count(' = stablehlo.')} compile {time.perf_counter()-t0:.1f} s", flush=True)

def model_loss(eff, x, y, r):
    return classification_loss(vit.forward(eff, x, train=True, rng=r), y)[0]
timed("model only, grad wrt every param", jax.grad(model_loss), vit.params, x, y, rng)

for label, method in [("lora", MethodConfig("lora", rank=8)), ("glora", MethodConfig("glora", space="large"))]:
    adapter = build_method(method, targets=vit.targets, stacked=vit.stacked,
                           head_pattern=jax_train.HEAD_PATTERN, compute_dtype=vit.compute_dtype).adapter
    frozen, trainable = init_trainable(jax.random.key(0), vit.params, adapter, head_pattern=jax_train.HEAD_PATTERN)
    cfg = adapter.space(vit.params).sample(jax.random.key(3)) if adapter.space is not None else None

    def loss(t, fr, c, x, y, r):
        return model_loss(effective_params(adapter, fr, t, c), x, y, r)
    timed(f"{label}: loss grad, cfg arg", jax.grad(loss), trainable, frozen, cfg, x, y, rng)
    if cfg is not None:
        def vloss(t, fr, c, x, y, r):
            f = lambda c1, x1, y1: loss(t, fr, c1, x1, y1, r)
            return jnp.mean(jax.vmap(f)(jax.tree.map(lambda a: a[None], c), x[None], y[None]))
        timed(f"{label}: loss grad, vmap K=1", jax.grad(vloss), trainable, frozen, cfg, x, y, rng)
