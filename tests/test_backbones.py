"""load_backbone's wiring: the model each name builds, where its params come from (the
pretrained ones, the task head fresh), its adapter targets and the config options it passes
on. Weights are stubs and init params come from jax.eval_shape: nothing is compiled."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import glora_jax
from experiments import backbones
from experiments.backbones import BackboneConfig, load_backbone
from experiments.models import efficientnet
from experiments.models.vit import VARIANTS, vit
from experiments.pipeline import plot_layer_types
from flora_jax import CONV_TARGETS
from glora_jax import search_plots
from peft_core.paths import flatten
from peft_core.targets import DENSE_TARGETS, SCANNED


@pytest.fixture(autouse=True)
def init_from_shapes(monkeypatch):
    """A model's init params as zeros of its param shapes (jax.eval_shape: nothing compiled)."""

    def init(model, rng, size):
        shapes = jax.eval_shape(model.init, rng, jnp.zeros((1, size, size, 3)))["params"]
        return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)

    monkeypatch.setattr(backbones, "_init", init)


@pytest.fixture
def one_block_vits(monkeypatch):
    """backbones.vit builds one-block ViTs of the variant asked for; returns the variants."""
    built = []

    def one_block(variant, **options):
        built.append(variant)
        return vit(variant, depth=1, **options)

    monkeypatch.setattr(backbones, "vit", one_block)
    return built


def test_efficientnet_takes_the_pretrained_params_and_a_fresh_head(monkeypatch, tmp_path):
    checkpoint = tmp_path / "lite0.npz"
    checkpoint.touch()
    config = BackboneConfig(
        name="efficientnet-lite0", image_size=32, checkpoint=str(checkpoint), drop_path=0.3
    )
    read = []

    def pretrained(path):  # the ImageNet weights: a 1000-class head
        read.append(path)
        return {"stem_conv": {"kernel": np.ones((3, 3, 3, 32), np.float32)},
                "head": {"kernel": np.ones((1280, 1000), np.float32)}}  # fmt: skip

    monkeypatch.setattr(efficientnet, "load_efficientnet_lite0_params", pretrained)
    backbone = load_backbone(config, num_classes=3)
    assert read == [checkpoint]
    np.testing.assert_array_equal(backbone.params["stem_conv"]["kernel"], 1.0)
    assert backbone.params["head"]["kernel"].shape == (1280, 3)
    assert backbone.model.num_classes == 3 and backbone.model.drop_path_rate == 0.3
    assert (backbone.targets, backbone.stacked) == (CONV_TARGETS, None)


def test_vit_b16_loads_its_checkpoint_under_a_fresh_zero_head(one_block_vits, tmp_path):
    """The task head starts at zero even from a checkpoint whose head has its shape."""
    model = vit("B", patch=16, depth=1, num_classes=3)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    path = tmp_path / "ViT-B_16.npz"
    np.savez(path, **{k: np.full(s.shape, 0.5, s.dtype) for k, s in flatten(shapes).items()})
    config = BackboneConfig(name="vit-b16", image_size=16, checkpoint=str(path))
    backbone = load_backbone(config, num_classes=3)
    assert one_block_vits[-1] == "B"
    loaded = flatten(backbone.params)
    assert loaded.keys() == flatten(shapes).keys()
    for key, value in loaded.items():
        np.testing.assert_array_equal(value, 0.0 if key.startswith("head/") else 0.5, err_msg=key)


@pytest.mark.parametrize(
    ("name", "variant"),
    [("vit-ti16-random", "Ti"), ("vit-s16-random", "S"), ("vit-b16-random", "B")],
)
@pytest.mark.parametrize("scan", [False, True])
def test_random_vits_are_their_named_size(one_block_vits, name, variant, scan):
    backbone = load_backbone(BackboneConfig(name=name, image_size=16, scan=scan), num_classes=3)
    assert one_block_vits[-1] == variant
    config = backbone.model.config
    assert (config.width, config.num_classes, config.scan) == (VARIANTS[variant].width, 3, scan)
    assert backbone.targets == DENSE_TARGETS
    assert backbone.stacked == (SCANNED if scan else None)  # the adapters' view of the blocks


@pytest.mark.parametrize(
    ("name", "scan", "expected"),
    [
        ("efficientnet-lite0", False,  # block0 has no expand conv; one stem and one head conv
         {"depthwise conv": 16, "expand / pw1": 15, "project / pw2": 16, "stem / head conv": 2}),
        ("vit-ti16-random", False,
         {"attention qkv": 12, "attention proj": 12, "mlp fc1": 12, "mlp fc2": 12}),
        ("vit-ti16-random", True,
         {"attention qkv": 12, "attention proj": 12, "mlp fc1": 12, "mlp fc2": 12}),
    ],
)  # fmt: skip
def test_the_search_plot_types_every_adapted_layer(monkeypatch, name, scan, expected):
    """The parameters-per-type plot of a GLoRA search puts each layer the backbone adapts in a
    type of its own kind (a convnet's in conv types, not all under 'other')."""
    imagenet = efficientnet.EfficientNetLite(num_classes=1000)
    monkeypatch.setattr(  # the pretrained params of the ImageNet model, as zeros
        efficientnet, "load_efficientnet_lite0_params",
        lambda path: backbones._init(imagenet, jax.random.key(0), 32),
    )  # fmt: skip
    checkpoint = __file__ if name == "efficientnet-lite0" else None  # weights stubbed
    backbone = load_backbone(
        BackboneConfig(name=name, image_size=32, checkpoint=checkpoint, scan=scan), num_classes=3
    )
    space = glora_jax.glora((4,), targets=backbone.targets, stacked=backbone.stacked).space(
        backbone.params
    )
    types = plot_layer_types(name)
    counts = collections.Counter(search_plots.layer_type(n, types) for n in space.slice_names)
    assert counts == expected
