"""experiments.methods.build_method: the backbone's compute dtype reaches GLoRA's update."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.backbones import BackboneConfig, load_backbone
from experiments.methods import MethodConfig, build_method


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
