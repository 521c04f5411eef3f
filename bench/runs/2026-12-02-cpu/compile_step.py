"""CPU: compile seconds of the whole GLoRA K=1 step with different optimisers (ViT-B, batch 8).

    for o in default sgd flat; do JAX_PLATFORMS=cpu PYTHONPATH=. \\
      python bench/runs/2026-12-02-cpu/compile_step.py $o glora-supernet-k1; done  # -> .txt
"""
import sys, time
import jax, optax
from bench import jax_train
from bench.models import vit_backbone
from bench.sizes import SIZES

size = SIZES["full"]
vit = vit_backbone(size, attention="xla")
bench = jax_train.TrainBench(vit, "jax/train", size.image_size, size.num_classes, size.timing, None)
case = [c for c in jax_train.VIT_CASES if c.label == sys.argv[2]][0]
inner = jax_train.make_optimizer
opt = sys.argv[1]
if opt == "sgd":
    jax_train.make_optimizer = lambda c, s: optax.sgd(s)
elif opt == "adam-noclip":
    jax_train.make_optimizer = lambda c, s: optax.adamw(s)
elif opt == "flat":
    jax_train.make_optimizer = lambda c, s: optax.flatten(inner(c, s))
prep = jax_train.prepare_train_step(bench, case, batch=8)
t0 = time.perf_counter(); prep.lowered.compile()
print(f"{case.label} {opt}: ops {prep.lowered.as_text().count(' = stablehlo.')} compile {time.perf_counter()-t0:.1f} s", flush=True)
