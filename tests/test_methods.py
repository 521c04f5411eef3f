"""experiments.methods: the backbone's compute dtype reaches GLoRA's update; the bias-gradient
form chosen per method and applied to a loaded backbone."""

from __future__ import annotations

import dataclasses
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import peft_core
from experiments.backbones import (
    BACKBONES,
    CONV_BACKBONES,
    Backbone,
    BackboneConfig,
    adapted_targets,
    load_backbone,
    with_bias_grad,
)
from experiments.methods import METHOD_KNOBS, METHODS, MethodConfig, bias_grad_for, build_method
from experiments.models.dinov2 import dinov2_s14
from experiments.models.efficientnet import EfficientNetLite
from experiments.models.vit import vit
from experiments.vtab_table import METHOD_NOTES
from flora_jax.modes import num_spatial_axes
from peft_core.activation_grads import tappable
from peft_core.layers import find_layers
from peft_core.targets import DENSE_TARGETS, SCANNED


@pytest.mark.parametrize("name", ["glora", "ssf"])
@pytest.mark.parametrize("compute_dtype", [None, jnp.float32, jnp.bfloat16])
def test_glora_methods_update_in_the_compute_dtype(name, compute_dtype):
    rng = np.random.default_rng(0)
    params = {"fc": {"kernel": rng.normal(size=(10, 9)).astype(np.float32)}}
    method = build_method(MethodConfig(name), targets=r"fc/kernel", compute_dtype=compute_dtype)
    adapter = method.adapter
    shapes = jax.eval_shape(adapter.init, jax.random.key(0), params)
    aparams = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)
    choice = {"A": "lora_8", "B": "vector", "C": "none", "D": "none", "E": "none"}
    cfg = method.fixed_cfg(params) or adapter.space(params).fixed(choice)
    kernel = jax.jit(adapter.apply)(params, aparams, cfg)["fc"]["kernel"]
    assert kernel.dtype == jnp.dtype(compute_dtype or jnp.float32)
    assert not np.allclose(kernel, params["fc"]["kernel"], atol=0.1)
    merged = jax.jit(adapter.merge)(params, aparams, cfg)["fc"]["kernel"]
    assert merged.dtype == jnp.float32


def test_loaded_backbone_knows_its_compute_dtype():
    config = BackboneConfig(name="vit-ti16-random", image_size=16, dtype="bfloat16")
    backbone = load_backbone(config, num_classes=3)
    assert backbone.compute_dtype == jnp.bfloat16  # the default is float32
    assert {x.dtype for x in jax.tree.leaves(backbone.params)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize(
    "name, num_configs, expected",
    [("glora", 1, "gemv"), ("glora", 4, "reduce"), ("lora", 1, "reduce"), ("full", 1, "reduce"),
     ("bitfit", 1, "reduce"), ("flora", 1, "reduce")],
)  # fmt: skip
def test_bias_grad_auto_picks_by_method_on_a_gpu(
    name: str, num_configs: int, expected: str
) -> None:
    method = MethodConfig(name)
    assert bias_grad_for(method, num_configs=num_configs, platform="gpu") == expected
    for platform in ("cpu", "tpu"):  # measured on a GPU only: autodiff's form elsewhere
        assert bias_grad_for(method, num_configs=num_configs, platform=platform) == "reduce"
    here = expected if jax.default_backend() == "gpu" else "reduce"
    assert bias_grad_for(method, num_configs=num_configs) == here  # this machine's backend
    for requested in ("reduce", "gemv"):  # an explicit choice wins
        got = bias_grad_for(method, num_configs=num_configs, requested=requested, platform="cpu")
        assert got == requested


def test_bias_grad_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="bias_grad must be one of"):
        bias_grad_for(MethodConfig("glora"), num_configs=1, requested="sum")
    with pytest.raises(ValueError, match="bias_grad must be one of"):
        BackboneConfig(name="vit-ti16-random", bias_grad="sum")
    with pytest.raises(ValueError, match="ViT backbones"):
        BackboneConfig(name="efficientnet-lite0", bias_grad="gemv")


def test_with_bias_grad_changes_the_vit_not_its_params_or_function() -> None:
    model = vit("Ti", patch=16, depth=1, num_classes=3)
    params = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    backbone = Backbone(model, params, lambda x: x / 255.0, DENSE_TARGETS, None)
    gemv = with_bias_grad(backbone, "gemv")
    assert (backbone.model.config.bias_grad, gemv.model.config.bias_grad) == ("reduce", "gemv")
    assert gemv.params is backbone.params
    assert with_bias_grad(backbone, "reduce") is backbone
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    params = jax.tree.map(lambda p: p + 0.01, backbone.params)  # a non-zero head

    def loss(b):  # noqa: ANN001, ANN202
        return lambda p: jnp.sum(b.forward(p, images, train=False) ** 2)

    chex.assert_trees_all_close(
        jax.jit(jax.grad(loss(gemv)))(params),
        jax.jit(jax.grad(loss(backbone)))(params),
        rtol=1e-4,
        atol=1e-6,
    )


@pytest.mark.parametrize("name", ["lora", "flora"])
@pytest.mark.parametrize("grads", ["auto", "activation", "weight"])
def test_low_rank_method_forms_its_gradients_as_configured(name: str, grads: str) -> None:
    # "auto" taps the dense layers wide enough to pay (640 x 640), "activation" every one,
    # "weight" none (autodiff through apply: no train view).
    params = {"wide": {"kernel": jnp.zeros((640, 640))}, "narrow": {"kernel": jnp.zeros((64, 256))}}
    method = build_method(MethodConfig(name, rank=2, grads=grads), targets=r".*/kernel")
    view = method.adapter.train
    if grads == "weight":
        assert view is None
        return
    assert view is not None
    eff = view.apply(params, method.adapter.init(jax.random.key(0), params))
    tapped = {k.split("/")[0] for k in peft_core.flatten(eff) if k.endswith("/lowrank_u")}
    assert tapped == {"auto": {"wide"}, "activation": {"wide", "narrow"}}[grads]


@pytest.mark.parametrize(
    "knobs, message",
    [({"name": "lora", "grads": "fused"}, "unknown grads 'fused'"),
     ({"name": "dora"}, "unknown method 'dora'; choose from ('glora', 'flora', 'lora', ")],
)  # fmt: skip
def test_method_config_rejects_unknown_methods_and_grads(knobs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        MethodConfig(**knobs)


@pytest.mark.parametrize(
    "knobs, message",
    [({"name": "lora", "space": "small"},
      "method.space would be ignored: lora reads method.rank, method.alpha, method.grads"),
     ({"name": "glora", "rank": 4}, "method.rank would be ignored: glora reads method.space"),
     ({"name": "flora", "alpha": 16.0}, "method.alpha would be ignored: flora reads"),
     ({"name": "bitfit", "grads": "weight"}, "method.grads would be ignored: bitfit reads none"),
     ({"name": "full", "rank": 4, "scale": 2.0}, "method.rank, method.scale would be ignored")],
)  # fmt: skip
def test_method_config_refuses_another_methods_knob(knobs: dict, message: str) -> None:
    """Built in Python as on the command line: a knob the method never reads is an error."""
    with pytest.raises(ValueError, match=re.escape(message)):
        MethodConfig(**knobs)


@pytest.mark.parametrize("name", METHODS)
def test_method_config_takes_its_own_knobs_and_others_at_their_defaults(name: str) -> None:
    own = {"rank": 4, "alpha": 8.0, "kernel_rank": 1, "scale": 2.0, "tucker": "nd",
           "space": "small", "grads": "weight"}  # fmt: skip
    config = MethodConfig(name, **{k: own[k] for k in METHOD_KNOBS[name]})
    assert all(getattr(config, k) == own[k] for k in METHOD_KNOBS[name])
    defaults = {f.name: f.default for f in dataclasses.fields(MethodConfig) if f.name != "name"}
    assert MethodConfig(name, **defaults) == MethodConfig(name)  # a default is no setting


def test_bitfit_ssf_and_lora_counts_on_vit_b16_are_the_ones_the_table_notes_state() -> None:
    # experiments.vtab_table.METHOD_NOTES: ours tune the adapted layers; the papers' every bias
    shapes = jax.eval_shape(
        vit("B", patch=16, num_classes=100).init, jax.random.key(0), jnp.zeros((1, 224, 224, 3))
    )["params"]
    flat = peft_core.flatten(shapes)
    every_bias = sum(v.size for k, v in flat.items() if k.endswith("bias") and "head" not in k)
    counts = {}
    for name in ("bitfit", "ssf"):
        method = build_method(MethodConfig(name), targets=DENSE_TARGETS)
        counts[name] = method.num_adapter_params(shapes, None, method.fixed_cfg(shapes))
    assert (counts["bitfit"], counts["ssf"], every_bias) == (82_944, 165_888, 102_912)
    for name, count in counts.items():
        assert f"{count:,}" in METHOD_NOTES[name]
    assert f"{every_bias:,}" in METHOD_NOTES["bitfit"]
    lora = build_method(MethodConfig("lora", rank=8), targets=DENSE_TARGETS)
    count = peft_core.param_count(jax.eval_shape(lora.adapter.init, jax.random.key(0), shapes))
    # per block, rank 8 x (fan_in + fan_out): q, k, v and out 768 x 768, fc1 and fc2 768 x 3072
    assert count == 12 * 8 * (4 * (768 + 768) + 2 * (768 + 3072)) == 1_327_104
    assert f"{count:,}" in METHOD_NOTES["lora"]


BACKBONE_MODELS = {  # each backbone's model, weights unneeded (shapes only, 112 px)
    "dinov2-s14": lambda scan: dinov2_s14(num_classes=3, scan=scan),
    "vit-b16": lambda scan: vit("B", patch=16, num_classes=3, scan=scan),
    "vit-b16-random": lambda scan: vit("B", patch=16, num_classes=3, scan=scan),
    "vit-s16-random": lambda scan: vit("S", patch=16, num_classes=3, scan=scan),
    "vit-ti16-random": lambda scan: vit("Ti", patch=16, num_classes=3, scan=scan),
    "efficientnet-lite0": lambda scan: EfficientNetLite(num_classes=3),
}


@pytest.mark.parametrize(
    "name, scan",
    [(name, scan) for name in BACKBONES for scan in (False, True)
     if not (scan and name in CONV_BACKBONES)],  # a convnet has no scanned blocks
)  # fmt: skip
def test_conv_backbones_are_the_ones_whose_adapted_layers_have_spatial_modes(name, scan):
    """The table config.py's knob check reads: kernel_rank acts on a layer only where
    CONV_BACKBONES says, tucker and activation-space grads only off it."""
    assert set(BACKBONE_MODELS) == set(BACKBONES)
    model = BACKBONE_MODELS[name](scan)
    images = np.zeros((1, 112, 112, 3), np.float32)  # 16- and 14-pixel patches
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), images)["params"])
    stacked = SCANNED if scan else None
    layers = find_layers(params, adapted_targets(name), stacked=stacked)
    assert layers
    conv = name in CONV_BACKBONES
    assert {num_spatial_axes(layer) > 0 for layer in layers} == {conv}
    assert {tappable(layer) for layer in layers} == {not conv}

    def count(**knobs):
        flora = build_method(MethodConfig("flora", **knobs), targets=adapted_targets(name),
                             stacked=stacked).adapter  # fmt: skip
        shapes = jax.eval_shape(flora.init, jax.random.key(0), params)
        return sum(x.size for x in jax.tree.leaves(shapes))

    assert (count(kernel_rank=1) != count(kernel_rank=3)) == conv
    assert (count(tucker="nd") != count(tucker="matrix")) == (not conv)


@pytest.mark.parametrize(
    "name, knobs, factor",
    [("lora", {"alpha": 6.0}, 3.0),  # scale alpha / rank = 6 / 2; without alpha 1
     ("flora", {"scale": 1.0}, 0.25)],  # dW = scale * G x U x V; the default scale is 4
)  # fmt: skip
def test_low_rank_methods_scale_their_update_by_their_knob(name, knobs, factor) -> None:
    params = {"fc": {"kernel": np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)}}

    def delta(**knobs):
        adapter = build_method(MethodConfig(name, rank=2, **knobs), targets=r"fc/kernel").adapter
        shapes = jax.eval_shape(adapter.init, jax.random.key(0), params)
        rng = np.random.default_rng(1)  # the same factors for every config
        aparams = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)
        return adapter.apply(params, aparams)["fc"]["kernel"] - params["fc"]["kernel"]

    assert not np.allclose(delta(), 0.0)
    chex.assert_trees_all_close(delta(**knobs), factor * delta(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("head_pattern", [r"head/.*", r"classifier/.*"])
def test_full_fine_tuning_trains_every_leaf_but_the_head(head_pattern: str) -> None:
    head = head_pattern.split("/")[0]
    params = {
        "block": {"kernel": np.zeros((4, 3), np.float32), "bias": np.zeros(3, np.float32)},
        head: {"kernel": np.zeros((3, 2), np.float32), "bias": np.zeros(2, np.float32)},
    }
    method = build_method(MethodConfig("full"), targets=DENSE_TARGETS, head_pattern=head_pattern)
    aparams = method.adapter.init(jax.random.key(0), params)
    assert set(peft_core.flatten(aparams)) == {"block/kernel", "block/bias"}
    assert method.num_adapter_params(params, aparams) == 4 * 3 + 3  # the head excluded
