"""CPU: the training loop's steady steps/s against its own jitted step timed back to back (not project code).

JAX_PLATFORMS=cpu PYTHONPATH=. python bench/runs/2026-12-02-cpu/loop_vs_step.py 60 backbone.name=vit-s16-random backbone.image_size=64 train.batch_size=16
"""
import sys, tempfile, time, statistics
from pathlib import Path
import jax
from bench.end_to_end import vtab_shaped_config, vtab_shaped_npz
from experiments import pipeline
from experiments.training import loop
import experiments.training.trainer as tr

steps = int(sys.argv[1])
wd = Path(tempfile.mkdtemp())
task = vtab_shaped_npz(wd / "task.npz", test_size=40)
sets = ["train.total_steps=%d" % steps, "train.log_every=10", "search.population=2", "search.top_k=1",
        "search.num_mutations=1", "search.num_crossovers=1", "search.generations=1",
        "search.param_budget=100000000"] + sys.argv[2:]
config = vtab_shaped_config(str(task), sets=sets)
orig = loop.run_steps
def wrapped(state, **k):
    t = time.perf_counter(); out = orig(state, **k); total = time.perf_counter() - t
    images, labels = k["train_data"].batch(0)
    s = jax.tree.map(lambda x: x.copy(), out)
    for _ in range(3):
        s, m = k["step_fn"](s, k["backbone"], images, labels)
    jax.block_until_ready(s)
    t = time.perf_counter()
    n = 20
    for _ in range(n):
        s, m = k["step_fn"](s, k["backbone"], images, labels)
    jax.block_until_ready(s)
    bare = (time.perf_counter() - t) / n
    print(f"loop total {total:.1f} s for {steps} steps; bare step {bare*1e3:.1f} ms ({1/bare:.2f} steps/s)")
    return out
loop.run_steps = wrapped; tr.run_steps = wrapped
res = pipeline.run(config, wd / "run")
import csv
rates = [float(r["value"]) for r in csv.DictReader(open(wd / "run/train/metrics.csv")) if r["name"] == "train/steps_per_sec"]
print("window rates", [round(r, 2) for r in rates], "median after first", statistics.median(rates[1:]))
