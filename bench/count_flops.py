"""FLOPs of every JAX row, counted on the CPU: ``python -m bench.count_flops --out flops.json``.

The count is XLA's cost model on the lowered HLO of exactly the step the GPU row runs (same
method, batch, shapes, dtypes), lowered here for the CPU backend because the GPU backend's
cost model reported no FLOPs (``bench.xla_stats``). Nothing is compiled or run, only traced.
XLA's cost model counts a while loop's body once, so the scanned ViT's rows (``nn.scan`` over
the blocks) get the count of the unscanned twin, whose math is the same, instead of their own
(which misses all blocks but one).
Attention is lowered as XLA einsums, so its matmuls are counted too (on the GPU they ran as one
cuDNN call). The search row's count is the forward's per-image FLOPs x images x subnets scored
per generation (the per-subnet merges, tiny next to the forward, are left out).
``bench.report --flops`` fills these into the GPU rows and recomputes their MFU.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from bench import jax_train
from bench.inputs import random_batches
from bench.models import convnext_backbone, vit_backbone
from bench.results import key_filter
from bench.sizes import SIZES, BenchSize
from experiments.training import data_mesh

SOURCE = "XLA cost_analysis of the lowered HLO (CPU lowering, attention as XLA einsums)"


def lowered_flops(lowered: jax.stages.Lowered) -> float:
    """``cost_analysis()["flops"]`` of a lowered function (ValueError when none is reported)."""
    cost: Any = lowered.cost_analysis()
    if isinstance(cost, list):
        cost = cost[0] if cost else {}
    if not cost or not cost.get("flops"):
        raise ValueError(f"XLA reported no FLOPs on backend {jax.default_backend()!r}")
    return float(cost["flops"])


def count_all(size: BenchSize, only: str | None = None) -> dict[str, float]:
    """{row key "name@batch": FLOPs of one call} for the train, infer, search and conv rows;
    ``only``: a regex over the training rows' keys (inference and search are always counted)."""
    counts: dict[str, float] = {}
    wanted = key_filter(only)
    vit = vit_backbone(size, attention="xla")
    backbones = {"train": vit, "conv": convnext_backbone(size)}
    for suite, backbone in backbones.items():
        _, cases, batches = jax_train.training_suite(size, suite)
        bench = jax_train.training_bench(backbone, size, suite, None)
        for batch in batches:
            for case in cases:
                key = f"{bench.prefix}/{case.label}@{batch}"
                if wanted(key):
                    prepared = jax_train.prepare_train_step(bench, case, batch=batch)
                    counts[key] = lowered_flops(prepared.lowered)
                    print(f"{key}: {counts[key] / 1e9:.1f} GFLOP", flush=True)
    for case in jax_train.SCAN_CASES:  # the unscanned twin's count (module docstring)
        for batch in size.train_batches:
            twin = f"{jax_train.VIT_PREFIX}/{case.label}@{batch}"
            if twin in counts:
                counts[f"{jax_train.SCAN_PREFIX}/{case.label}@{batch}"] = counts[twin]
    forward = jax.jit(lambda p, x: vit.forward(p, x, train=False))
    for batch in size.infer_batches:
        ((images, _),) = random_batches(
            num_sets=1, batch=batch, image_size=size.image_size,
            num_classes=size.num_classes, mesh=data_mesh(), seed=0,
        )  # fmt: skip
        flops = lowered_flops(forward.lower(vit.params, images))
        for label in ("plain", "merged-glora"):
            counts[f"jax/infer/{label}@{batch}"] = flops
    widest = max(size.infer_batches)
    per_image = counts[f"jax/infer/plain@{widest}"] / widest
    population = size.search.population
    per_generation = -(-population // size.configs_per_call) * size.configs_per_call
    counts[f"jax/search/score-val{size.val_size}@{population}"] = (
        per_image * size.val_size * per_generation
    )
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), default="full")
    p.add_argument("--only", default=None, help="regex over training row keys name@batch")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    counts = count_all(SIZES[args.size], only=args.only)
    Path(args.out).write_text(json.dumps({"source": SOURCE, "flops": counts}, indent=2))
    print(f"wrote {len(counts)} counts to {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
