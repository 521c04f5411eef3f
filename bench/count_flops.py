"""FLOPs of every JAX row, counted on the CPU: ``python -m bench.count_flops --out flops.json``.

The count is XLA's cost model on the lowered HLO of exactly the step the GPU row runs (same
method, batch, shapes, dtypes), lowered here for the CPU backend because the GPU backend's
cost model reported no FLOPs (``bench.xla_stats``). Nothing is compiled or run, only traced.
XLA's cost model counts a while loop's body once, so the scanned ViT's rows (``nn.scan`` over
the blocks, rematerialised or not) get the count of the unscanned twin instead of their own
(which misses all blocks but one): the same math but for the twin's last block, which computes
only the class token's rows (about 7% fewer FLOPs than the loop's), so a scanned row's MFU is
slightly low; a rematerialised row's counts the model's FLOPs, not the recomputation's.
Likewise the one-read kernel's rows (``-pallas``: a Pallas call, which the cost model cannot see
into, formed on the CPU by its interpreter's loops) get the count of the same method with the
XLA tap, which forms the same products.
Attention is lowered as XLA einsums, so its matmuls are counted too (on the GPU they ran as one
cuDNN call). The search row's count is the forward's per-image FLOPs x images x subnets scored
per generation (the per-subnet merges, tiny next to the forward, are left out).
``bench.report --flops`` fills these into the GPU rows and recomputes their MFU.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import jax

from bench import jax_train, scaling
from bench.inputs import one_device_mesh, random_batches
from bench.jax_serve import INFER_VARIANTS
from bench.models import convnext_backbone, vit_backbone
from bench.sizes import SIZES, BenchSize
from experiments.command_line import exit_on_error

#: Suffix of the training rows whose taps run the one-read kernel (``grads="pallas"``).
ONE_READ_SUFFIX = "-pallas"

SOURCE = "XLA cost_analysis of the lowered HLO (CPU lowering, attention as XLA einsums)"


def lowered_flops(lowered: jax.stages.Lowered) -> float:
    """``cost_analysis()["flops"]`` of a lowered function (ValueError when none is reported)."""
    cost: Any = lowered.cost_analysis()
    if isinstance(cost, list):
        cost = cost[0] if cost else {}
    if not cost or not cost.get("flops"):
        hint = "" if jax.default_backend() == "cpu" else ": count on the CPU, JAX_PLATFORMS=cpu"
        raise ValueError(f"XLA reported no FLOPs for this lowering{hint}")
    return float(cost["flops"])


def _one_read_twin(key: str) -> str | None:
    """The XLA-tap twin's key of a one-read training row (``-pallas``), else None."""
    name, _, batch = key.rpartition("@")
    if name.startswith("jax/train") and name.endswith(ONE_READ_SUFFIX):
        return f"{name.removesuffix(ONE_READ_SUFFIX)}@{batch}"
    return None


def counted_step(key: str) -> str | None:
    """The training step whose count serves row ``key``: its own, a scanned row's unscanned
    twin or a one-read row's XLA-tap twin (module docstring), a scaling row's one-device step
    at its per-device batch; None for the inference and search rows (always counted)."""
    name, _, batch = key.rpartition("@")
    scaled = scaling.parse_name(name)
    if scaled is not None:
        case, devices = scaled
        return f"{jax_train.VIT_PREFIX}/{case}@{int(batch) // devices}"
    for scanned, _ in jax_train.SCANNED_SUITES.values():
        if name.startswith(scanned + "/"):
            return jax_train.VIT_PREFIX + key[len(scanned) :]
    if (twin := _one_read_twin(key)) is not None:
        return twin
    return key if name.startswith("jax/train") else None


def check_keys(size: BenchSize, keys: Collection[str]) -> None:
    """A ValueError when some of ``keys`` are no training row of ``size`` (at a batch >= 1) nor
    a scaling row of a scaling case (at a batch its devices divide), naming them and the rows."""
    names = {
        f"{prefix}/{case.label}"
        for suite in jax_train.TRAINING_SUITES
        for prefix, cases, _ in [jax_train.training_suite(size, suite)]
        for case in cases
    }
    scaled = sorted(case.label for case in jax_train.SCALE_CASES)

    def known(key: str) -> bool:
        name, _, batch = key.rpartition("@")
        if not batch.isdigit() or int(batch) < 1:
            return False
        parsed = scaling.parse_name(name)
        if parsed is None:
            return name in names
        return parsed[0] in scaled and int(batch) % parsed[1] == 0

    unknown = [key for key in keys if not known(key)]
    if unknown:
        raise ValueError(
            f"{unknown} name no training row of size {size.name!r}: the rows are NAME@BATCH with "
            f"NAME one of {sorted(names)}, or {scaling.PREFIX}/CASE/Ndev@BATCH (N devices, "
            f"BATCH a multiple of N) with CASE one of {scaled}"
        )


def count_all(size: BenchSize, keys: Collection[str] | None = None) -> dict[str, float]:
    """{row key "name@batch": FLOPs of one call} for the inference and search rows and the
    training rows of ``keys`` (any batch; scanned, one-read and scaling rows through
    ``counted_step``; ``check_keys`` first), or without ``keys`` every training row of
    ``size``."""
    if keys is not None:
        check_keys(size, keys)
    counts: dict[str, float] = {}
    steps = None if keys is None else {s for s in map(counted_step, keys) if s is not None}
    every_planned: list[str] = []
    vit = vit_backbone(size, attention="xla")
    backbones = {"train": vit, "conv": convnext_backbone(size)}
    for suite, backbone in backbones.items():
        _, cases, batches = jax_train.training_suite(size, suite)
        bench = jax_train.training_bench(backbone, size, suite, None)
        by_label = {case.label: case for case in cases}
        planned = [f"{bench.prefix}/{c.label}@{b}" for b in batches for c in cases]
        every_planned += planned
        todo = steps if steps is not None else {s for s in map(counted_step, planned) if s}
        for key in sorted(todo):
            prefix, _, row = key.rpartition("/")
            label, _, examples = row.partition("@")
            if prefix != bench.prefix:
                continue
            prepared = jax_train.prepare_train_step(bench, by_label[label], batch=int(examples))
            counts[key] = lowered_flops(prepared.lowered)
            print(f"{key}: {counts[key] / 1e9:.1f} GFLOP", flush=True)
    scanned = {case.label for case in jax_train.SCAN_CASES}
    for key in list(counts):  # the unscanned twin's count (module docstring)
        prefix, _, row = key.rpartition("/")
        if prefix == jax_train.VIT_PREFIX and row.partition("@")[0] in scanned:
            for scanned_prefix, _ in jax_train.SCANNED_SUITES.values():
                counts[f"{scanned_prefix}/{row}"] = counts[key]
    for key in every_planned if keys is None else keys:  # module docstring
        if (twin := _one_read_twin(key)) is not None:
            counts[key] = counts[twin]
    forward = jax.jit(lambda p, x: vit.forward(p, x, train=False))
    for batch in size.infer_batches:
        ((images, _),) = random_batches(
            num_sets=1, batch=batch, image_size=size.image_size,
            num_classes=size.num_classes, mesh=one_device_mesh(), seed=0,
        )  # fmt: skip
        flops = lowered_flops(forward.lower(vit.params, images))
        for label in INFER_VARIANTS:
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
    p = argparse.ArgumentParser(
        prog="python -m bench.count_flops", description=__doc__.splitlines()[0]
    )
    p.add_argument("--size", choices=sorted(SIZES), default="full")
    p.add_argument(
        "--keys", nargs="*", default=None,
        help="row keys name@batch whose training steps to count (none given: none; the option "
        "left out: every training row)",
    )  # fmt: skip
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.keys is not None:
        try:
            check_keys(SIZES[args.size], args.keys)
        except ValueError as e:
            p.error(f"--keys {e}")
    # the GPU backend's cost model reports no FLOPs (module docstring): count on the CPU even
    # on a GPU machine (no backend has started yet: importing this module starts none)
    jax.config.update("jax_platforms", "cpu")
    counts = count_all(SIZES[args.size], keys=args.keys)
    Path(args.out).write_text(json.dumps({"source": SOURCE, "flops": counts}, indent=2))
    print(f"wrote {len(counts)} counts to {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    exit_on_error(main)
