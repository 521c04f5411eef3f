"""What an adapter's weight side costs, from XLA on the CPU: apply + its gradient, no model.

    python -m bench.weight_side --size full --methods lora flora glora

For each method: ``adapter.apply(params, aparams, cfg)`` and its gradient with respect to the
adapter params (a bf16 all-ones cotangent stands in for the model's weight gradients), jitted
with params and cfg as arguments (a traced cfg: the supernet's case) and compiled for the CPU.
Reported from the optimised HLO: dot ops (each a GEMM kernel on a GPU), fusions, and XLA's cost
analysis (bytes accessed, FLOPs). GLoRA uses one random subnet. It isolates the batch-independent
work each training step does around the model: few large ops vs many small ones (launch-bound
on a GPU), and the memory it moves.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from bench.models import vit_backbone
from bench.sizes import SIZES
from experiments.backbones import Backbone
from experiments.command_line import exit_on_error
from experiments.methods import METHODS, MethodConfig, build_method


def weight_side_stats(backbone: Backbone, method: MethodConfig) -> dict[str, Any]:
    """dots, fusions, bytes accessed and FLOPs of ``method``'s apply + gradient on the CPU."""
    adapter = build_method(
        method, targets=backbone.targets, stacked=backbone.stacked,
        compute_dtype=backbone.compute_dtype,
    ).adapter  # fmt: skip
    params = backbone.params
    aparams = adapter.init(jax.random.key(0), params)
    cfg = adapter.space(params).sample(jax.random.key(1)) if adapter.space else None
    cotangent = jax.tree.map(lambda p: jnp.ones(p.shape, jnp.bfloat16), params)

    def pairing(ap: Any, params: Any, cfg: Any) -> jax.Array:
        eff = adapter.apply(params, ap, cfg)
        pairs = zip(jax.tree.leaves(eff), jax.tree.leaves(cotangent), strict=True)
        return jnp.stack([jnp.vdot(e.astype(jnp.bfloat16), c) for e, c in pairs]).sum(
            dtype=jnp.float32
        )

    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        compiled = jax.jit(jax.grad(pairing)).lower(aparams, params, cfg).compile()
    text = compiled.as_text() or ""
    cost: Any = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {
        "method": method.name,
        "dots": len(re.findall(r"\bdot\(", text)),
        "fusions": len(re.findall(r"\bfusion\(", text)),
        "bytes_accessed": float(cost.get("bytes accessed", 0.0)),
        "flops": float(cost.get("flops", 0.0)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.weight_side", description=(__doc__ or "").splitlines()[0]
    )
    p.add_argument("--size", choices=sorted(SIZES), default="full")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=["lora", "flora", "glora"])
    p.add_argument("--scan", action="store_true", help="the ViT's blocks in one nn.scan")
    p.add_argument("--out", default=None, help="JSON file to write")
    args = p.parse_args(argv)
    backbone = vit_backbone(SIZES[args.size], attention="xla", scan=args.scan)
    rows = []
    for name in args.methods:
        row = weight_side_stats(backbone, MethodConfig(name, space="large"))
        rows.append(row)
        print(
            f"{name}: {row['dots']} dots, {row['fusions']} fusions, "
            f"{row['bytes_accessed'] / 1e9:.2f} GB accessed, {row['flops'] / 1e9:.2f} GFLOP",
            flush=True,
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"size": args.size, "scan": args.scan, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    exit_on_error(main)
