"""GPU check for the token padding multiple, and where the backbone stage's time goes.

1. Timings of a random ViT-B/16's init (as experiments.backbones._init does it) on the GPU,
   split into lower / compile / run, after the device is in use (as in the e2e), and the same
   init on the host CPU followed by a device_put.
2. ViT-B/16 (random, bf16 compute, cuDNN attention) with the sequence padded to a multiple of
   2 (198) and of 16 (208) against XLA attention on the 197 tokens unpadded: logits and the
   gradients of a cross-entropy loss, relative errors (float32 norms).
"""
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.models.vit import vit

t = time.perf_counter()
jnp.zeros(1).block_until_ready()
print(f"first device op {time.perf_counter() - t:.2f} s", flush=True)
from bench.models import choose_attention  # noqa: E402
t = time.perf_counter()
print(choose_attention("auto"), f"{time.perf_counter() - t:.2f} s", flush=True)

def build(impl, pad_to):
    return vit("B", patch=16, num_classes=10, dtype=jnp.bfloat16, attn_implementation=impl,
               attn_pad_to=pad_to)

PADS = (2, 8, 16) if jax.default_backend() == "gpu" else ()
model = build("cudnn" if PADS else "xla", 16)
rng = jax.random.key(0)
dummy = np.zeros((1, 224, 224, 3), np.float32)
t0 = time.perf_counter()
lowered = jax.jit(model.init).lower(rng, dummy)
t1 = time.perf_counter()
compiled = lowered.compile()
t2 = time.perf_counter()
params = jax.block_until_ready(compiled(rng, dummy))["params"]
t3 = time.perf_counter()
print(f"init on GPU: lower {t1-t0:.2f} compile {t2-t1:.2f} run {t3-t2:.2f} s", flush=True)
cpu = jax.devices("cpu")[0]
t0 = time.perf_counter()
with jax.default_device(cpu):
    host = jax.jit(build("xla", None).init)(jax.random.key(0), dummy)["params"]
    jax.block_until_ready(host)
t1 = time.perf_counter()
on_gpu = jax.block_until_ready(jax.device_put(host, jax.devices()[0]))
t2 = time.perf_counter()
print(f"init on CPU {t1-t0:.2f} s, device_put {t2-t1:.2f} s", flush=True)
diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(on_gpu)))
print("CPU init vs GPU init, max abs difference:", diff, flush=True)

images = jax.random.uniform(jax.random.key(1), (8, 224, 224, 3), jnp.float32, -1, 1)
labels = jnp.arange(8) % 10

def loss_fn(p, m):
    logits = m.apply({"params": p}, images)
    return -jnp.mean(jax.nn.log_softmax(logits.astype(jnp.float32))[jnp.arange(8), labels]), logits

def rel(a, b):
    fa = jnp.concatenate([x.astype(jnp.float32).ravel() for x in jax.tree.leaves(a)])
    fb = jnp.concatenate([x.astype(jnp.float32).ravel() for x in jax.tree.leaves(b)])
    return float(jnp.linalg.norm(fa - fb) / jnp.linalg.norm(fb))

ref_model = build("xla", None)
(ref_loss, ref_logits), ref_grads = jax.jit(jax.value_and_grad(lambda p: loss_fn(p, ref_model), has_aux=True))(params)
for pad in PADS:
    (l, logits), grads = jax.jit(jax.value_and_grad(lambda p: loss_fn(p, build("cudnn", pad)), has_aux=True))(params)
    print(f"pad_to={pad}: loss {float(l):.5f} (xla {float(ref_loss):.5f}), logits rel {rel(logits, ref_logits):.2e}, grads rel {rel(grads, ref_grads):.2e}", flush=True)
