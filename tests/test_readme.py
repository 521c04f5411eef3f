"""The README's API example runs as written, on a small ViT, and does what its comments say."""

from __future__ import annotations

import re
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import peft_core
from experiments.data import load_task
from experiments.models.vit import vit

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python() -> str:
    (block,) = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    return block


def test_readme_api_example_runs_as_written() -> None:
    model = vit("Ti", patch=4, num_classes=3, depth=2)
    images = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
    params = model.init(jax.random.key(1), images)["params"]
    head = params["head"]  # a random head: with the fresh zero one no gradient reaches LoRA
    kernel = jax.random.normal(jax.random.key(2), head["kernel"].shape)
    params = {**params, "head": {**head, "kernel": kernel}}
    scope = {
        "params": params,
        "model": model,
        "images": images,
        # the names the example leaves to the reader: two adapters on disjoint targets, a forward
        "a1": peft_core.lora(2, targets=r".*/MlpBlock_0/Dense_0/kernel"),
        "a2": peft_core.lora(2, targets=r".*/MlpBlock_0/Dense_1/kernel"),
        "forward": lambda p, x: model.apply({"params": p}, x),
        "loss_of": lambda logits: jnp.sum(jnp.sin(logits)),
    }
    exec(compile(readme_python(), str(README), "exec"), scope)

    # the last adapter of the example is GLoRA: its effective and merged trees are params' own
    eff, merged, cfg, space = scope["eff"], scope["merged"], scope["cfg"], scope["space"]
    chex.assert_trees_all_equal_structs(eff, params)
    chex.assert_trees_all_equal_structs(merged, params)
    chex.assert_shape(scope["logits"], (2, 3))
    decoded = space.decode(cfg)
    assert set(decoded) == set(space.layers)
    assert all(set(options) == set("ABCDE") for options in decoded.values())
    # the train view's loss runs and gives gradients to LoRA's factors only
    lora = peft_core.lora(8)
    aparams = lora.init(jax.random.key(3), params)
    grads = jax.grad(scope["loss"])(aparams)
    chex.assert_trees_all_equal_structs(grads, aparams)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads))


def test_readme_npz_rules_hold(tmp_path: Path) -> None:
    """The README's rules for your own npz: images (N, H, W[, C]) with C 1 or 3, N over 1,000,
    at least 2 classes; each refused with a ValueError where broken."""
    text = " ".join(README.read_text().split())
    assert "holds uint8 `images` (N, H, W[, C]; C 1 or 3)" in text
    assert "N must exceed 1,000" in text and "at least 2 classes" in text

    def load(n: int, channels: tuple[int, ...], classes: int) -> int:
        path = tmp_path / "data.npz"
        images = np.zeros((n, 2, 2, *channels), np.uint8)
        np.savez(path, images=images, labels=np.arange(n) % classes)
        return len(load_task(str(path), source="npz", split="test", image_size=None))

    assert load(1001, (), 2) == load(1001, (1,), 2) == load(1001, (3,), 2) == 1
    for n, channels, classes, error in (
        (1001, (4,), 2, "1 or 3 channels"),
        (1001, (2,), 2, "1 or 3 channels"),
        (1000, (3,), 2, "more than 1000 examples"),
        (1001, (3,), 1, "at least 2"),
    ):
        with pytest.raises(ValueError, match=re.escape(error)):
            load(n, channels, classes)
