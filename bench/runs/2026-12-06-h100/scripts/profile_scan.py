"""Profile (``bench.profile``) the GLoRA K=1 step on the unrolled ViT-B/16 and on the scanned one
with remat keeping the dense layers' outputs (call 160, forty-second session): where the scanned
step's extra 0.3x goes. ``bench.profile`` builds its ViT with ``bench.models.vit_backbone``; this
script swaps in ``experiments.backbones.load_backbone`` with the variant's options.

    python3 bench/runs/2026-12-06-h100/scripts/profile_scan.py OUT_DIR BATCH [--tiny]
        [--variant NAME] [--no-command-buffers]

``--variant`` profiles one variant only; ``--no-command-buffers`` (call 162) runs without XLA's
CUDA graphs, so that every kernel is given to its HLO instruction (``ops`` in the json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench import models
from bench.profile import disable_command_buffers, profile_cases, render
from bench.sizes import BenchSize
from experiments.backbones import Backbone, BackboneConfig, load_backbone

VARIANTS: dict[str, dict[str, Any]] = {
    "unrolled": {},
    "scan-remat-dots-nb": {
        "scan": True, "remat": True, "remat_policy": "dots_with_no_batch_dims_saveable",
    },
    # added for call 166 (forty-fourth session); only with --variant, so that call 160's
    # command still profiles the two above
    "scan-remat-attn": {
        "scan": True, "remat": True,
        "remat_policy": "dots_with_no_batch_dims_and_attention_saveable",
    },
}  # fmt: skip
DEFAULT_VARIANTS = ["unrolled", "scan-remat-dots-nb"]


def main(out: Path, batch: int, tiny: bool, variants: list[str]) -> None:
    for variant, options in VARIANTS.items():
        if variant not in variants:
            continue

        def backbone(size: BenchSize, *, attention: str | None, **_: Any) -> Backbone:
            config = BackboneConfig(
                name="vit-ti16-random" if tiny else "vit-b16-random", image_size=size.image_size,
                dtype="bfloat16", attention=attention, **options,  # noqa: B023 (called at once)
            )  # fmt: skip
            return load_backbone(config, num_classes=size.num_classes)

        models.vit_backbone = backbone  # type: ignore[assignment]
        folder = out / variant
        folder.mkdir(parents=True, exist_ok=True)
        for result in profile_cases(
            ["glora-supernet-k1"], size_name="tiny" if tiny else "full", batch=batch, steps=5,
            out=folder, attention="auto" if tiny else "cudnn",
        ):  # fmt: skip
            (folder / f"{result['case']}.json").write_text(json.dumps(result, indent=2))
            print(f"== {variant}", render(result), sep="\n", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="profile the GLoRA K=1 step, unrolled and scanned")
    parser.add_argument("out", type=Path)
    parser.add_argument("batch", type=int)
    parser.add_argument("--tiny", action="store_true", help="ViT-Ti/16 (a CPU check)")
    parser.add_argument("--variant", choices=list(VARIANTS), action="append")
    parser.add_argument("--no-command-buffers", action="store_true")
    args = parser.parse_args()
    if args.no_command_buffers:
        disable_command_buffers()
    main(args.out, args.batch, args.tiny, args.variant or DEFAULT_VARIANTS)
