"""The training state: everything that changes during training, and nothing frozen."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from experiments.training.partition import Trainable


class TrainState(NamedTuple):
    """A pytree; ``step`` is also the data position (batch ``step`` comes next).

    step: int32 scalar. trainable: {"adapter": aparams, "head": head}. opt_state: optax state of
    ``trainable`` only. rng: base key; step s draws from ``fold_in(rng, s)``.
    """

    step: jax.Array
    trainable: Trainable
    opt_state: Any
    rng: jax.Array


def create_state(
    trainable: Trainable, optimizer: optax.GradientTransformation, rng: jax.Array
) -> TrainState:
    """Step 0. The trainable leaves are copied, so donating the state never frees caller arrays."""
    trainable = jax.tree.map(jnp.array, trainable)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        trainable=trainable,
        opt_state=optimizer.init(trainable),
        rng=rng,
    )


def step_rng(state: TrainState) -> jax.Array:
    """The key of the current step: ``fold_in(rng, step)``, so a resumed run draws the same."""
    return jax.random.fold_in(state.rng, state.step)
