"""The jitted programs of a run with cuDNN attention, traced on the CPU.

cuDNN runs only on GPUs, but its batching and differentiation rules run when a program is
traced: each test patches out jax's cuDNN version checks and traces (``jax.eval_shape``) a
program of ``experiments.vtab`` with a cuDNN-configured ViT, where a rule that refuses it fails
as on the GPU (the search's scorer did until 848d67f: its vmap over subnets' weights).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import pytest

from experiments.backbones import Backbone, BackboneConfig, load_backbone
from experiments.methods import MethodConfig, build_method
from experiments.training import (
    HEAD_PATTERN,
    make_multi_config_count_fn,
    make_optimizer,
    make_train_step,
    stack_eval_batches,
)
from experiments.training.config import OptimConfig
from experiments.training.partition import init_trainable
from experiments.training.state import create_state

IMAGE = 32  # 4 patches + the class token: 5 tokens, padded to 6 and masked


pytestmark = pytest.mark.usefixtures("cudnn_traces")  # tests/conftest.py


def _backbone() -> Backbone:
    config = BackboneConfig(
        name="vit-ti16-random", image_size=IMAGE, dtype="bfloat16", attention="cudnn"
    )
    return load_backbone(config, num_classes=10, seed=0)


def _method(backbone: Backbone, name: str) -> Any:
    return build_method(
        MethodConfig(name), targets=backbone.targets, stacked=backbone.stacked,
        head_pattern=HEAD_PATTERN, compute_dtype=backbone.compute_dtype,
    )  # fmt: skip


def test_the_search_scorer_traces() -> None:
    """Subnets vmapped over the adapter's weights, one batch of images for all."""
    backbone = _backbone()
    adapter = _method(backbone, "glora").adapter
    aparams = jax.eval_shape(adapter.init, jax.random.key(0), backbone.params)
    cfgs = adapter.space(backbone.params).sample(jax.random.key(1), (3,))
    images = np.zeros((8, IMAGE, IMAGE, 3), np.uint8)
    batches = stack_eval_batches(images, np.zeros(8, np.int32), batch_size=4)
    scores = jax.eval_shape(
        make_multi_config_count_fn(forward=backbone.forward, adapter=adapter),
        backbone.params, aparams, cfgs, batches,
    )  # fmt: skip
    assert scores.shape == (3,)


@pytest.mark.parametrize(("name", "num_configs"), [("glora", 2), ("lora", 1), ("flora", 1)])
def test_the_train_step_traces(name: str, num_configs: int) -> None:
    """The supernet's K subnets vmapped over weights and images; LoRA's and FLoRA's taps."""
    backbone = _backbone()
    adapter = _method(backbone, name).adapter
    optimizer = make_optimizer(OptimConfig(), lambda step: 1e-3)
    frozen, trainable = init_trainable(
        jax.random.key(0), backbone.params, adapter, head_pattern=HEAD_PATTERN
    )
    state = create_state(trainable, optimizer, jax.random.key(1))
    space = adapter.space(backbone.params) if adapter.space is not None else None
    step = make_train_step(
        forward=backbone.forward, adapter=adapter, optimizer=optimizer,
        schedule=lambda step: 1e-3, space=space, num_configs=num_configs,
    )  # fmt: skip
    images = np.zeros((4, IMAGE, IMAGE, 3), np.uint8)
    _, metrics = jax.eval_shape(step, state, frozen, images, np.zeros(4, np.int32))
    assert metrics["loss"].shape == ()
