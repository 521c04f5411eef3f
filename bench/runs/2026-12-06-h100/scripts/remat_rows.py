"""Training rows of ViT-B/16 (random weights, bf16, cuDNN attention) unrolled, scanned, and
scanned with each rematerialisation policy (calls 157-, forty-second session): the scanned step
saved every block's float32 norm intermediates as loop outputs, 1.5x the unrolled step's time.

    python3 bench/runs/2026-12-06-h100/scripts/remat_rows.py OUT.json CASE@BATCH ... \
        [--tiny] [--variants=unrolled,scan,...]  (default: DEFAULT_VARIANTS)
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import jax

from bench.jax_train import VIT_CASES, bench_train_step, training_bench
from bench.models import choose_attention
from bench.peaks import peak_flops
from bench.results import save_rows
from bench.sizes import SIZES
from experiments.backbones import BackboneConfig, load_backbone

VARIANTS = {
    "unrolled": {},
    "scan": {"scan": True},
    "scan-remat": {"scan": True, "remat": True},
    "scan-remat-dots": {"scan": True, "remat": True, "remat_policy": "dots_saveable"},
    "scan-remat-dots-nb": {
        "scan": True, "remat": True, "remat_policy": "dots_with_no_batch_dims_saveable",
    },
    # added for call 165 (forty-fourth session); only with --variants, so that call 157's
    # command still runs the five above
    "scan-remat-attn": {
        "scan": True, "remat": True,
        "remat_policy": "dots_with_no_batch_dims_and_attention_saveable",
    },
}  # fmt: skip
DEFAULT_VARIANTS = ["unrolled", "scan", "scan-remat", "scan-remat-dots", "scan-remat-dots-nb"]


def main(out: Path, keys: list[str], tiny: bool, variants: list[str]) -> None:
    size = SIZES["tiny" if tiny else "full"]
    size = dataclasses.replace(size, image_size=32) if tiny else size
    impl, note = choose_attention("auto" if tiny else "cudnn")
    print(note, flush=True)
    peak = peak_flops(jax.devices()[0].device_kind)
    rows = []
    for variant in variants:
        options = VARIANTS[variant]
        config = BackboneConfig(
            name="vit-b16-random", image_size=size.image_size, dtype="bfloat16",
            attention=impl, **options,
        )  # fmt: skip
        backbone = load_backbone(config, num_classes=size.num_classes)
        bench = training_bench(backbone, size, "train", peak)
        for key in keys:
            label, batch = key.split("@")
            case = next(c for c in VIT_CASES if c.label == label)
            row = bench_train_step(bench, case, batch=int(batch), name=f"{variant}/{label}")
            rows.append(row)
            print(
                f"{row.name}@{batch}: {row.items_per_s:.1f} img/s ({row.step_s * 1e3:.2f} ms), "
                f"peak {row.peak_mem_bytes / 2**30:.2f} GiB, compile {row.compile_s:.1f} s",
                flush=True,
            )
            save_rows(rows, out)


if __name__ == "__main__":
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    chosen = [f.split("=", 1)[1].split(",") for f in flags if f.startswith("--variants=")]
    main(Path(args[0]), args[1:], "--tiny" in flags, chosen[0] if chosen else DEFAULT_VARIANTS)
