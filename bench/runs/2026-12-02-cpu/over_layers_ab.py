"""A/B on the CPU: peft_core.over_layers cutting layers by split (now) or by x[j] (before 3d85f90).

    JAX_PLATFORMS=cpu PYTHONPATH=. python bench/runs/2026-12-02-cpu/over_layers_ab.py

A 12-block ViT-Ti/16 (random weights, bf16 compute, XLA attention) at 32x32, batch 8: per form
and training row, XLA's bytes accessed of the compiled step, its pads and concatenates, and the
median of 5 timings of 10 steps each. Forms alternate, twice.
"""

import statistics
import time

import jax
import jax.numpy as jnp

import peft_core.adapter as core
from bench import jax_train
from bench import models as bm
from bench.sizes import SIZES
from experiments.backbones import Backbone
from peft_core.targets import DENSE_TARGETS

split_form = core.over_layers


def indexing_form(fn, args, n_stack):
    out = [None] * len(args)

    def signature(i):
        leaves, structure = jax.tree.flatten(args[i])
        return (n_stack[i], structure, *((jnp.shape(x), jnp.result_type(x)) for x in leaves))

    for group in core.group_by(range(len(args)), signature):
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *(args[i] for i in group))
        batched = core.over_stack(fn, n_stack[group[0]] + 1)(*stacked)
        for j, i in enumerate(group):
            out[i] = jax.tree.map(lambda x, j=j: x[j], batched)
    return out


size = SIZES["tiny"]
model = bm.vit("Ti", patch=16, depth=12, num_classes=size.num_classes, dtype=jnp.bfloat16,
               attn_implementation=None)
backbone = Backbone(model, bm._init(model, size.image_size, seed=0),
                    lambda im: bm.normalize(im, "minus1_1"), DENSE_TARGETS, None)
bench = jax_train.TrainBench(backbone, "jax/train", size.image_size, size.num_classes,
                             size.timing, None)
cases = {c.label: c for c in jax_train.VIT_CASES}
print(jax.devices()[0].device_kind, jax.__version__)
for run in range(2):
    for form_name, form in (("split", split_form), ("indexing", indexing_form)):
        for module in ("glora_jax.adapter", "flora_jax.adapter"):
            setattr(__import__(module, fromlist=["x"]), "over_layers", form)
        for label in ("glora-supernet-k1", "glora-supernet-k4", "flora-r8"):
            prepared = jax_train.prepare_train_step(bench, cases[label], batch=8)
            compiled = prepared.lowered.compile()
            cost = compiled.cost_analysis()
            cost = cost[0] if isinstance(cost, list) else cost
            text = compiled.as_text()
            state, inputs = prepared.state, prepared.inputs[0]
            for _ in range(3):
                state, metrics = compiled(state, prepared.frozen, *inputs)
            jax.block_until_ready(metrics)
            times = []
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(10):
                    state, metrics = compiled(state, prepared.frozen, *inputs)
                jax.block_until_ready(metrics)
                times.append((time.perf_counter() - start) / 10 * 1e3)
            print(f"run {run} {form_name:8s} {label:18s} bytes {cost['bytes accessed'] / 1e6:7.1f} MB"
                  f"  pads {text.count(' pad('):3d}  concatenates {text.count('concatenate('):3d}"
                  f"  {statistics.median(times):7.2f} ms/step", flush=True)
