"""Host time per training step of the e2e recipe (GLoRA supernet K=1, ViT-B/16 shape) at 32x32."""
import sys, time, tempfile
from pathlib import Path
import jax, numpy as np
import prune_ab  # EVERY_TOKEN=1 patches the encoder
from bench.end_to_end import vtab_shaped_config, vtab_shaped_npz
from experiments import pipeline
from experiments.backbones import load_backbone
from experiments.methods import build_method
from experiments.data.pipeline import TrainBatches
from experiments.training.sharding import data_mesh, jit_train_step, put_global, replicated, batch_sharded
from experiments.training.step import make_train_step
from experiments.training.optim import lr_schedule, make_optimizer
from experiments.training.partition import init_trainable
from experiments.training.state import create_state

N = int(__import__("os").environ.get("PROBE_STEPS", "60"))
size = int(sys.argv[1]) if len(sys.argv) > 1 else 32
drop = sys.argv[2] if len(sys.argv) > 2 else "0.1"
extra = sys.argv[3:]
wd = Path(tempfile.mkdtemp())
task = vtab_shaped_npz(wd / "t.npz", test_size=10)
config = vtab_shaped_config(str(task), sets=[f"backbone.image_size={size}", f"backbone.drop_path={drop}", "backbone.dtype=bfloat16", *extra])
splits = pipeline.load_splits(config)
bb = load_backbone(config.backbone, num_classes=splits.train.num_classes, seed=0)
method = build_method(config.method, targets=bb.targets, stacked=bb.stacked,
                      head_pattern=config.train.head_pattern, compute_dtype=bb.compute_dtype)
tc = config.train
data = TrainBatches(splits.train.images, splits.train.labels, batch_size=tc.batch_size, seed=0, mesh=data_mesh())
mesh = data_mesh()
sched = lr_schedule(tc.optim, steps_per_epoch=data.steps_per_epoch, total_steps=1000)
opt = make_optimizer(tc.optim, sched)
space = method.adapter.space(bb.params) if method.adapter.space is not None else None
backbone, trainable = init_trainable(jax.random.key(0), bb.params, method.adapter, head_pattern=tc.head_pattern)
backbone = put_global(backbone, replicated(mesh))
state = put_global(create_state(trainable, opt, jax.random.key(1)), replicated(mesh))
raw = make_train_step(forward=bb.forward, adapter=method.adapter, optimizer=opt,
                      schedule=sched, space=space, num_configs=1)
PACK = __import__("os").environ.get("PACK") == "1"
if PACK:  # the trainer's step: packed state
    jitted = jit_train_step(raw, mesh, state)
    step = jitted.step
    state = jitted.pack(state)
else:  # the step before packing: one buffer per leaf
    rep, bsh = replicated(mesh), batch_sharded(mesh)
    step = jax.jit(raw, in_shardings=(rep, rep, bsh, bsh), out_shardings=(rep, rep), donate_argnums=(0,))
print("PACK", PACK)
print("leaves: state", len(jax.tree.leaves(state)), "backbone", len(jax.tree.leaves(backbone)))
bs = batch_sharded(mesh)
for s in range(3):
    im, lb = data.batch(s)
    state, m = step(state, backbone, put_global(im, bs), put_global(lb, bs))
jax.block_until_ready(m)
tb, ts, tp = [], [], []
t_all = time.perf_counter()
for s in range(3, 3 + N):
    t0 = time.perf_counter(); im, lb = data.batch(s); t1 = time.perf_counter()
    im, lb = put_global(im, bs), put_global(lb, bs); t2 = time.perf_counter()
    state, m = step(state, backbone, im, lb); t3 = time.perf_counter()
    tb.append(t1 - t0); tp.append(t2 - t1); ts.append(t3 - t2)
t0 = time.perf_counter(); jax.block_until_ready(m); tw = time.perf_counter() - t0
ms = lambda v: f"{1e3*np.median(v):.2f} ms (p90 {1e3*np.percentile(v,90):.2f})"
total = time.perf_counter() - t_all
print(f"EVERY_TOKEN={int(prune_ab.EVERY_TOKEN)} drop={drop} size={size}: {N/total:.1f} steps/s ({1e3*total/N:.2f} ms/step incl. host);", "batch()", ms(tb), "put_global", ms(tp), "step()", ms(ts), "final wait", f"{tw:.2f} s")
td, tr = [], []
for s_ in range(20):
    im, lb = data.batch(s_); im, lb = put_global(im, bs), put_global(lb, bs)
    jax.block_until_ready((state, im, lb))
    t0 = time.perf_counter(); state, m = step(state, backbone, im, lb); t1 = time.perf_counter()
    jax.block_until_ready(m); t2 = time.perf_counter()
    td.append(t1 - t0); tr.append(t2 - t0)
print(f"  idle GPU: step() returns after {ms(td)}; done after {ms(tr)}", flush=True)
if __import__("os").environ.get("PROFILE_STEP"):
    import cProfile, pstats
    jax.block_until_ready(state)
    im, lb = put_global(data.batch(0)[0], bs), put_global(data.batch(0)[1], bs)
    pr = cProfile.Profile(); pr.enable()
    state, m = step(state, backbone, im, lb)
    pr.disable(); jax.block_until_ready(m)
    pstats.Stats(pr).sort_stats("cumulative").print_stats(25)
