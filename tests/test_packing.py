"""The packed train state: one flat buffer per floating dtype, exactly invertible."""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.training.packing import Packing
from experiments.training.sharding import data_mesh, jit_train_step
from experiments.training.state import TrainState


def _tree() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "adapter": {
            "a": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=(5,)), jnp.bfloat16),
            "c": jnp.asarray(rng.normal(size=()), jnp.float32),
        },
        "count": jnp.asarray(7, jnp.int32),
        "key": jax.random.key(3),
        "moments": [jnp.asarray(rng.normal(size=(2, 2, 2)), jnp.float32)],
    }


def test_pack_concatenates_each_dtype_in_tree_order_and_unpack_inverts_it() -> None:
    tree = _tree()
    packing = Packing.of(tree)
    packed = packing.pack(tree)
    leaves = jax.tree.leaves(tree)
    f32 = [np.ravel(x) for x in leaves if x.dtype == jnp.float32]
    assert sorted(packed.buffers) == ["bfloat16", "float32"]
    np.testing.assert_array_equal(packed.buffers["float32"], np.concatenate(f32))
    np.testing.assert_array_equal(
        np.asarray(packed.buffers["bfloat16"], np.float32),
        np.asarray(tree["adapter"]["b"], np.float32),
    )
    chex.assert_shape(packed.buffers["float32"], (12 + 1 + 8,))
    assert len(packed.rest) == 2  # the int32 counter and the PRNG key, untouched
    back = packing.unpack(packed)
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    for got, want in zip(jax.tree.leaves(back), leaves, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
    chex.assert_trees_all_equal(
        jax.random.key_data(back.pop("key")), jax.random.key_data(tree.pop("key"))
    )
    chex.assert_trees_all_equal(back, tree)


def test_packing_of_shapes_equals_packing_of_arrays() -> None:
    tree = _tree()
    assert Packing.of(jax.eval_shape(lambda: tree)) == Packing.of(tree)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda t: {**t, "extra": jnp.zeros(())}, r"cannot pack a tree of structure .*'extra'"),
        (lambda t: {**t, "moments": [jnp.zeros((2, 2, 3))]},
         r"leaf of shape \(2, 2, 3\) where \(2, 2, 2\) was packed"),
        (lambda t: {**t, "moments": [jnp.zeros((2, 2, 2), jnp.bfloat16)]},
         "leaf of dtype bfloat16 where float32 was packed"),
    ],
    ids=["structure", "shape", "dtype"],
)  # fmt: skip
def test_pack_of_a_different_tree_is_an_error(change: Any, match: str) -> None:
    tree = _tree()
    with pytest.raises(ValueError, match=match):
        Packing.of(tree).pack(change(tree))


def test_jitted_step_on_the_packed_state_equals_the_step_on_the_tree() -> None:
    def step(
        state: TrainState, backbone: Any, images: jax.Array, labels: jax.Array
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        scale = jnp.mean(images) + backbone["w"].sum()
        grads = jax.tree.map(lambda w: w * scale.astype(w.dtype), state.trainable)
        trainable = jax.tree.map(lambda w, g: w - 0.1 * g, state.trainable, grads)
        opt_state = jax.tree.map(lambda m, g: 0.9 * m + g, state.opt_state, grads)
        metrics = {"loss": jnp.mean(labels.astype(jnp.float32)) + state.step}
        next_state = state._replace(step=state.step + 1, trainable=trainable, opt_state=opt_state)
        return next_state, metrics

    tree = _tree()["adapter"]
    state = TrainState(jnp.asarray(2, jnp.int32), tree, jax.tree.map(jnp.ones_like, tree),
                       jax.random.key(0))  # fmt: skip
    backbone = {"w": jnp.arange(3.0)}
    images, labels = jnp.linspace(0.0, 1.0, 8).reshape(2, 4), jnp.arange(2)
    want_state, want_metrics = step(state, backbone, images, labels)
    jitted = jit_train_step(step, data_mesh(), state)
    packed, metrics = jitted.step(jitted.pack(state), backbone, images, labels)
    got_state = jitted.unpack(packed)
    chex.assert_trees_all_close(metrics, want_metrics)
    chex.assert_trees_all_close(
        (got_state.step, got_state.trainable, got_state.opt_state),
        (want_state.step, want_state.trainable, want_state.opt_state),
        rtol=1e-6,
    )


def test_the_jitted_step_donates_the_packed_state() -> None:
    """The step reuses the state's buffers (donated): the packed state it was given is gone."""

    def step(
        state: TrainState, backbone: Any, images: jax.Array, labels: jax.Array
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        trainable = jax.tree.map(lambda w: w * 2, state.trainable)
        return state._replace(step=state.step + 1, trainable=trainable), {"loss": images.sum()}

    tree = _tree()["adapter"]
    state = TrainState(jnp.asarray(0, jnp.int32), tree, tree, jax.random.key(0))
    jitted = jit_train_step(step, data_mesh(), state)
    packed = jitted.pack(state)
    new, _ = jitted.step(packed, {}, jnp.ones((2, 3)), jnp.arange(2))
    assert all(buffer.is_deleted() for buffer in packed.buffers.values())
    chex.assert_trees_all_equal(jitted.unpack(new).trainable, jax.tree.map(lambda w: w * 2, tree))
