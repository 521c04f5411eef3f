"""CPU: the values a scanned GLoRA supernet step's widest loop returns (4-block ViT-S, 64 px,
batch 16, bf16; the forward loop, whose stacked outputs the backward reads): the result types of
the lowered program's largest ``stablehlo.while``.

    JAX_PLATFORMS=cpu PYTHONPATH=. python bench/runs/2026-12-06-h100/scripts/scan_residuals.py
"""

from __future__ import annotations

import collections
import dataclasses
import re

import jax.numpy as jnp

from bench import models
from bench.jax_train import VIT_CASES, prepare_train_step, training_bench
from bench.sizes import SIZES
from experiments.backbones import Backbone
from experiments.data.preprocess import normalize
from experiments.models.vit import vit
from peft_core.targets import DENSE_TARGETS, SCANNED

size = dataclasses.replace(SIZES["tiny"], image_size=64)
case = next(c for c in VIT_CASES if c.label == "glora-supernet-k1")
model = vit("S", patch=16, depth=4, num_classes=10, dtype=jnp.bfloat16, scan=True)
backbone = Backbone(
    model, models._init(model, 64, seed=0), lambda im: normalize(im, "minus1_1"), DENSE_TARGETS,
    SCANNED, jnp.bfloat16,
)  # fmt: skip
text = prepare_train_step(training_bench(backbone, size, "scan", None), case, batch=16).lowered
loops = [line for line in text.as_text().splitlines() if "stablehlo.while" in line]
widest = max(loops, key=len)
types = re.findall(r"tensor<([^>]*)>", widest.split(") : ", 1)[1])
for kind, count in collections.Counter(types).most_common():
    print(f"{count:3d} x {kind}")
