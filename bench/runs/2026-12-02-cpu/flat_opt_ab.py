"""CPU A/B: the trainer's optimiser per leaf vs optax.flatten (one vector): ops, compile, step.

    for f in 0 1; do FLAT=$f JAX_PLATFORMS=cpu PYTHONPATH=. \\
      python bench/runs/2026-12-02-cpu/flat_opt_ab.py lora-r8,glora-supernet-k1; done  # -> .txt
"""
import os, sys, time
import jax, optax
from bench import jax_train
from bench.models import vit_backbone
from bench.sizes import SIZES

if os.environ.get("FLAT") == "1":
    inner = jax_train.make_optimizer
    jax_train.make_optimizer = lambda c, s: optax.flatten(inner(c, s))
size = SIZES[os.environ.get("SIZE", "full")]
batch = int(os.environ.get("BATCH", "8"))
vit = vit_backbone(size, attention="xla")
bench = jax_train.TrainBench(vit, "jax/train", size.image_size, size.num_classes, size.timing, None)
for case in jax_train.VIT_CASES:
    if case.label not in sys.argv[1].split(","):
        continue
    prep = jax_train.prepare_train_step(bench, case, batch=batch)
    n = prep.lowered.as_text().count(" = stablehlo.")
    t0 = time.perf_counter(); comp = prep.lowered.compile(); t1 = time.perf_counter()
    state = prep.state
    times = []
    for i in range(6):
        s = time.perf_counter()
        state, m = comp(state, prep.frozen, *prep.inputs[i % len(prep.inputs)])
        jax.block_until_ready(state)
        times.append(time.perf_counter() - s)
    print(f"FLAT={os.environ.get('FLAT','0')} {case.label}: lowered ops {n}, compile {t1-t0:.1f} s, "
          f"step {sorted(times[1:])[2]*1e3:.0f} ms", flush=True)
