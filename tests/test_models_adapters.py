"""Every adapter on every backbone with its default targets: merge changes exactly the targeted
layers, by updates of the adapter's form (LoRA and FLoRA: low rank in the layer's matrix view or
in every Tucker mode; GLoRA: equal to the numpy reference of ``test_glora``).

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
from test_glora import ref_apply

import flora_jax
import glora_jax
import peft_core
from experiments.models.convnext import convnext_for_tests
from experiments.models.efficientnet import LITE0_STAGES, EfficientNetLite
from experiments.models.vit import vit
from glora_jax.adapter import QKV_FUSE, glora_layers
from peft_core.layers import find_layers
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


def max_rank(delta: np.ndarray, adapter: str) -> int:
    """The largest rank among ``delta``'s views that ``adapter`` bounds: its (fan_in, fan_out)
    matrix for LoRA and matrix FLoRA, every mode unfolding of the kernel for N-D FLoRA."""
    if adapter == "flora_nd":
        views = [np.moveaxis(delta, m, 0).reshape(delta.shape[m], -1) for m in range(delta.ndim)]
    else:
        views = [delta]
    ranks = []
    for view in views:
        sv = np.linalg.svd(np.asarray(view, np.float64), compute_uv=False)
        ranks.append(int(np.sum(sv > 1e-4 * sv[0])))
    return max(ranks)


#: The rank each adapter of ADAPTERS gives a layer's update.
RANKS = {"lora": 1, "flora_nd": 2, "flora_matrix": 2}


@pytest.mark.slow
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_merge_changes_targeted_layers_by_the_adapters_update(model_name: str) -> None:
    make_model, size, targets, stacked = MODELS[model_name]
    model = make_model()
    images = jax.random.normal(jax.random.key(0), (2, size, size, 3))
    params = jax.jit(model.init)(jax.random.key(1), images)["params"]
    params = {**params, "head": randomised(params["head"], 3)}  # heads start at zero
    flat = peft_core.flatten(params)
    forward = jax.jit(lambda p: model.apply({"params": p}, images))  # one compile per model
    base = forward(params)
    layers = find_layers(params, targets, stacked=stacked)
    conv = targets == flora_jax.CONV_TARGETS
    names = ("flora_nd", "glora") if conv else ("lora", "flora_matrix", "flora_nd", "glora")
    for name in names:
        adapter = ADAPTERS[name](targets, stacked)
        aparams = randomised(adapter.init(jax.random.key(2), params), 4)
        cfg = adapter.space(params).sample(jax.random.key(5)) if adapter.space else None
        merged_params = jax.jit(adapter.merge)(params, aparams, cfg)
        chex.assert_trees_all_equal_shapes_and_dtypes(merged_params, params)
        merged = peft_core.flatten(merged_params)
        if name == "glora":
            groups = {
                g.name: ([m.name for m in g.members], len(g.stack_shape))
                for g in glora_layers(
                    params, targets=targets, exclude=None, stacked=stacked, fuse=QKV_FUSE,
                    out_axes=None,
                )
            }  # fmt: skip
            want = ref_apply(params, aparams, adapter.space(params).decode(cfg), groups)
            chex.assert_trees_all_close(merged, peft_core.flatten(want), rtol=1e-4, atol=1e-5)
        else:
            changed = {p for p, v in merged.items() if not np.array_equal(v, flat[p])}
            assert changed == {layer.kernel_path for layer in layers}, name
            for layer in layers:
                delta = np.asarray(merged[layer.kernel_path], np.float64) - flat[layer.kernel_path]
                for idx in np.ndindex(*layer.stack_shape):
                    d = delta[idx]
                    if name != "flora_nd":
                        d = d.reshape(layer.fan_in, layer.fan_out)
                    assert max_rank(d, name) == RANKS[name], (name, layer.kernel_path, idx)
        # The adapter really changed the model, and never its head.
        adapted = forward(jax.jit(adapter.apply)(params, aparams, cfg))
        assert float(jnp.max(jnp.abs(adapted - base))) > 1e-5, name
        assert all(np.array_equal(merged[p], flat[p]) for p in flat if p.startswith("head/"))
