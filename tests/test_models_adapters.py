"""Every adapter on every backbone with its default targets: merged params give the adapted logits.

Adapter tensors are randomised (at init every adapter is the identity, which would hide bugs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flora_jax
import glora_jax
import peft_core
from experiments.models.convnext import convnext_for_tests
from experiments.models.efficientnet import LITE0_STAGES, EfficientNetLite
from experiments.models.vit import vit
from peft_core.targets import DENSE_TARGETS, SCANNED

MODELS: dict[str, tuple[Callable[[], nn.Module], int, Any, Any]] = {
    # name: (model, image size, targets, stacked)
    "vit": (lambda: vit("Ti", patch=8, depth=2, num_classes=5), 16, DENSE_TARGETS, None),
    "vit_scanned": (
        lambda: vit("Ti", patch=8, depth=2, num_classes=5, scan=True), 16, DENSE_TARGETS, SCANNED
    ),
    "dinov2_like": (
        lambda: vit("Ti", patch=14, depth=2, num_classes=5, layer_scale=1.0), 28, DENSE_TARGETS,
        None,
    ),
    "convnext_v2": (lambda: convnext_for_tests(version=2, num_classes=5), 32,
                    flora_jax.CONV_TARGETS, None),
    # EfficientNet-Lite's first three stages: 1x1, 3x3 and 5x5 depthwise convs, all block kinds.
    "efficientnet": (
        lambda: EfficientNetLite(stages=LITE0_STAGES[:3], head_features=64, num_classes=5), 32,
        flora_jax.CONV_TARGETS, None,
    ),
}  # fmt: skip

ADAPTERS: dict[str, Callable[[Any, Any], peft_core.Adapter]] = {
    "lora": lambda t, s: peft_core.lora(1, targets=t, stacked=s),
    "flora_nd": lambda t, s: flora_jax.flora(2, targets=t, stacked=s, tucker="nd"),
    "flora_matrix": lambda t, s: flora_jax.flora(2, targets=t, stacked=s, tucker="matrix"),
    "glora": lambda t, s: glora_jax.glora((1,), targets=t, stacked=s),
}


def randomised(tree: Any, seed: int) -> Any:
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    noise = [
        0.5 * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, noise)


@pytest.mark.slow
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_merged_logits_equal_adapted_logits(model_name: str) -> None:
    make_model, size, targets, stacked = MODELS[model_name]
    model = make_model()
    images = jax.random.normal(jax.random.key(0), (2, size, size, 3))
    params = jax.jit(model.init)(jax.random.key(1), images)["params"]
    params = {**params, "head": randomised(params["head"], 3)}  # heads start at zero
    forward = jax.jit(lambda p: model.apply({"params": p}, images))  # one compile per model
    base = forward(params)
    conv = targets == flora_jax.CONV_TARGETS
    names = ("flora_nd", "glora") if conv else ("lora", "flora_matrix", "flora_nd", "glora")
    for name in names:
        make_adapter = ADAPTERS[name]
        adapter = make_adapter(targets, stacked)
        aparams = randomised(adapter.init(jax.random.key(2), params), 4)
        cfg = adapter.space(params).sample(jax.random.key(5)) if adapter.space else None
        adapted = forward(jax.jit(adapter.apply)(params, aparams, cfg))
        merged_params = jax.jit(adapter.merge)(params, aparams, cfg)
        chex.assert_trees_all_equal_shapes_and_dtypes(merged_params, params)
        chex.assert_trees_all_close(forward(merged_params), adapted, rtol=1e-5, atol=1e-5)
        # The adapter really changed the model.
        assert float(jnp.max(jnp.abs(adapted - base))) > 1e-5, name
        # Only targeted kernels (and, for GLoRA, their biases) differ from the base params.
        changed = [
            p for p, v in peft_core.flatten(merged_params).items()
            if not np.array_equal(v, peft_core.flatten(params)[p])
        ]  # fmt: skip
        assert changed and all(p.endswith(("/kernel", "/bias")) for p in changed), name
        assert not any(p.startswith("head/") for p in changed), name
