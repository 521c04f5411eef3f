"""Inference rows: the plain backbone against the merged adapted model.

``adapter.merge(params, aparams, cfg)`` returns plain arrays with the tree, shapes and dtypes of
``params``, so the merged model runs the very same compiled forward as the plain backbone: the
merge costs nothing at serving time by construction. Both are timed anyway (same executable,
their timed windows taken in turn, ``bench.timing.time_interleaved``, so that a drift of the
machine does not pass for a cost of the merge) so the table shows it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from bench.inputs import one_device_mesh, random_batches
from bench.results import Row
from bench.timing import TimingSettings, time_interleaved
from bench.xla_stats import compile_with_stats, timed_row
from experiments.backbones import Backbone
from experiments.methods import MethodConfig, build_method
from experiments.training import HEAD_PATTERN
from peft_core.paths import Params

#: GLoRA (the largest space) with one fixed subnet: the adapter whose merge does the most.
MERGED_METHOD = MethodConfig("glora", space="large")


#: The inference rows: the plain backbone and the same model with a merged GLoRA subnet.
INFER_VARIANTS = ("plain", "merged-glora")


def merged_params(backbone: Backbone) -> Params:
    """The backbone's params with a GLoRA subnet merged in (random adapter, seeded subnet)."""
    method = build_method(
        MERGED_METHOD, targets=backbone.targets, stacked=backbone.stacked,
        head_pattern=HEAD_PATTERN,
    )  # fmt: skip
    adapter = method.adapter
    assert adapter.space is not None
    aparams = jax.jit(adapter.init)(jax.random.key(0), backbone.params)
    cfg = adapter.space(backbone.params).sample(jax.random.key(1))
    merged: Params = jax.jit(adapter.merge)(backbone.params, aparams, cfg)
    plain_struct = jax.tree.map(lambda x: (x.shape, x.dtype), backbone.params)
    if jax.tree.map(lambda x: (x.shape, x.dtype), merged) != plain_struct:
        raise ValueError("merged params differ from the plain params in tree, shape or dtype")
    return merged


def bench_inference(
    backbone: Backbone,
    *,
    prefix: str,
    batches: tuple[int, ...],
    image_size: int,
    num_classes: int,
    timing: TimingSettings,
    peak_flops: float | None,
) -> list[Row]:
    """Rows "<prefix>/plain" and "<prefix>/merged-glora" at every batch size."""
    forward = jax.jit(lambda p, x: backbone.forward(p, x, train=False))
    variants = dict(zip(INFER_VARIANTS, (backbone.params, merged_params(backbone)), strict=True))
    rows = []
    for batch in batches:
        inputs = random_batches(
            num_sets=timing.input_sets, batch=batch, image_size=image_size,
            num_classes=num_classes, mesh=one_device_mesh(), seed=None,
        )  # fmt: skip
        lowered = forward.lower(backbone.params, inputs[0][0])
        compiled, stats = compile_with_stats(lowered)
        image_sets = [images for images, _ in inputs]
        timings = time_interleaved(
            {
                label: _forward_call(compiled, params, image_sets)
                for label, params in variants.items()
            },
            sync=jax.block_until_ready,
            settings=timing,
        )
        for label, t in timings.items():
            note = "same executable as plain, timed in turn" if label != "plain" else "f32 params"
            note += "; batch 1: latency-bound" if batch == 1 else ""
            rows.append(timed_row(f"{prefix}/{label}", batch, t, stats, peak_flops, note))
    return rows


def _forward_call(
    compiled: jax.stages.Compiled, params: Params, images: list[jax.Array]
) -> Callable[[int], jax.Array]:
    """Call i: the compiled forward of ``params`` on input set ``i % len(images)``."""
    return lambda i: compiled(params, images[i % len(images)])
