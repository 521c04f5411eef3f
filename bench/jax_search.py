"""Search rows: GLoRA candidates scored per second on val200, and the paper's whole search.

Scoring is the pipeline's: ``make_config_scorer`` (one jitted ``vmap`` over configs of a
``lax.scan`` over the stacked val200 batches), called with one generation (``population``
fresh random subnets) at a time. The whole search is ``glora_jax.evolution.evolutionary_search``
with the paper's settings (population 50, 20 generations, top-k 10, 25 mutations, 25
crossovers), timed end to end once the scorer is compiled. Data are random images: accuracy
is meaningless here, the cost is not.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from bench.inputs import one_device_mesh
from bench.peaks import mfu
from bench.results import Row
from bench.sizes import BenchSize
from experiments.backbones import Backbone
from experiments.methods import MethodConfig, build_method
from experiments.training import HEAD_PATTERN, make_config_scorer, stack_eval_batches
from glora_jax.evolution import evolutionary_search


def bench_search(
    backbone: Backbone, size: BenchSize, *, forward_flops_per_image: float | None,
    peak_flops: float | None,
) -> list[Row]:  # fmt: skip
    """Rows "jax/search/score-val{N}" (population per call) and "jax/search/evolution"."""
    method = build_method(
        MethodConfig("glora", space="large"), targets=backbone.targets, stacked=backbone.stacked,
        head_pattern=HEAD_PATTERN, compute_dtype=backbone.compute_dtype,
    )  # fmt: skip
    adapter = method.adapter
    assert adapter.space is not None
    params = backbone.params
    space = adapter.space(params)
    aparams = jax.jit(adapter.init)(jax.random.key(0), params)
    rng = np.random.default_rng()
    shape = (size.val_size, size.image_size, size.image_size, 3)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    labels = rng.integers(0, size.num_classes, (size.val_size,), dtype=np.int32)
    scorer = make_config_scorer(
        forward=backbone.forward, adapter=adapter, params=params, aparams=aparams,
        batches=stack_eval_batches(
            images, labels, batch_size=size.eval_batch, mesh=one_device_mesh()
        ),
        configs_per_call=size.configs_per_call,
    )  # fmt: skip
    population = size.search.population
    seeds = rng.integers(2**31, size=size.timing.warmup + size.timing.repeats)
    cfgs = [space.sample(jax.random.key(int(s)), (population,)) for s in seeds]
    for cfg in cfgs[: size.timing.warmup]:
        scorer(cfg)
    samples = []
    for cfg in cfgs[size.timing.warmup :]:
        start = time.perf_counter()
        scorer(cfg)  # returns numpy: the device work is done
        samples.append(time.perf_counter() - start)
    p10, median, p90 = (float(x) for x in np.percentile(samples, [10, 50, 90]))
    per_call = -(-population // size.configs_per_call) * size.configs_per_call
    flops = None
    if forward_flops_per_image is not None:
        flops = forward_flops_per_image * size.val_size * per_call
    val = f"val{size.val_size}"
    score_row = Row(
        name=f"jax/search/score-{val}",
        batch=population,
        step_s=median,
        spread_s=(p10, p90),
        unit="cand",
        flops=flops,
        flops_source="inference cost_analysis per image x images scored",
        mfu=mfu(flops, median, peak_flops),
        note=f"{size.configs_per_call} subnets per vmapped call; includes per-subnet merges",
    )
    s = size.search
    start = time.perf_counter()
    result = evolutionary_search(
        space, scorer, param_budget=s.param_budget, seed=0, population=s.population,
        top_k=s.top_k, num_mutations=s.num_mutations, mutation_prob=s.mutation_prob,
        num_crossovers=s.num_crossovers, generations=s.generations, max_tries=s.max_tries,
        progress=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    search_row = Row(
        name="jax/search/evolution",
        batch=result.candidates_evaluated,
        step_s=seconds,
        unit="cand",
        note=(
            f"whole search on {val}: {s.generations} generations, "
            f"{result.candidates_evaluated} candidates, one run (scorer compiled before)"
        ),
    )
    return [score_row, search_row]
