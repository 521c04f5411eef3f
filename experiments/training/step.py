"""One jitted train step for every adapter.

    eff    = adapter.apply(backbone + head, aparams, cfg)
    logits = forward(eff, images, train=True, rng)
    loss   = mean softmax cross-entropy;  grads wrt trainable = {"adapter", "head"} only

``cfg`` is fixed (``None`` for adapters without a search space, or a chosen subnet), or, for a
supernet, drawn inside the step by ``glora_jax.supernet.supernet_loss`` (K subnets at once).
An adapter with a train view (``adapter.train``, e.g. LoRA's activation-space gradients) runs
as ``train.apply`` and ``train.wrap_forward(forward)`` instead: the same loss and gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import optax

from experiments.training.partition import Trainable, effective_params
from experiments.training.state import TrainState, step_rng
from glora_jax.supernet import ConfigSpace, Metrics, supernet_loss
from peft_core import Adapter
from peft_core.paths import Params


class Forward(Protocol):
    """The model: ``forward(params, images, train=..., rng=...) -> logits (B, num_classes)``."""

    def __call__(
        self, params: Params, images: jax.Array, *, train: bool, rng: jax.Array
    ) -> jax.Array: ...


#: (state, backbone, images (B, ...), labels (B,)) -> (next state, scalar metrics)
TrainStep = Callable[[TrainState, Params, jax.Array, jax.Array], tuple[TrainState, Metrics]]


def classification_loss(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, Metrics]:
    """Mean softmax cross-entropy of logits (B, C) against int labels (B,), and the accuracy."""
    loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
    return jnp.mean(loss), {"accuracy": accuracy}


def global_norm(tree: Any) -> jax.Array:
    """sqrt of the sum of squares of every leaf (f32)."""
    leaves = jax.tree.leaves(tree)
    return jnp.sqrt(
        sum((jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves), jnp.zeros(()))
    )


def make_train_step(
    *,
    forward: Forward,
    adapter: Adapter,
    optimizer: optax.GradientTransformation,
    schedule: optax.Schedule,
    space: ConfigSpace | None = None,
    num_configs: int = 1,
    cfg: Any = None,
) -> TrainStep:
    """The (un-jitted) step; see the module docstring.

    space: sample a fresh subnet per step (``num_configs`` per step) instead of using ``cfg``.
    Metrics: loss, accuracy (on the batch), grad_norm, lr (the one applied at this step).
    """
    if space is not None and cfg is not None:
        raise ValueError("give either a search space to sample from or a fixed cfg, not both")
    if space is None and num_configs != 1:
        raise ValueError(f"num_configs={num_configs} needs a search space (space=...)")
    if adapter.train is not None:
        forward = adapter.train.wrap_forward(forward)
        adapter = adapter._replace(apply=adapter.train.apply)

    def step(
        state: TrainState, backbone: Params, images: jax.Array, labels: jax.Array
    ) -> tuple[TrainState, Metrics]:
        def config_loss(
            trainable: Trainable, x: jax.Array, y: jax.Array, c: Any, rng: jax.Array
        ) -> tuple[jax.Array, Metrics]:
            eff = effective_params(adapter, backbone, trainable, c)
            return classification_loss(forward(eff, x, train=True, rng=rng), y)

        def fixed_loss(
            trainable: Trainable, x: jax.Array, y: jax.Array, rng: jax.Array
        ) -> tuple[jax.Array, Metrics]:
            return config_loss(trainable, x, y, cfg, rng)

        loss_fn = (
            fixed_loss
            if space is None
            else supernet_loss(config_loss, space, num_configs=num_configs)
        )
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.trainable, images, labels, step_rng(state)
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.trainable)
        next_state = state._replace(
            step=state.step + 1,
            trainable=optax.apply_updates(state.trainable, updates),
            opt_state=opt_state,
        )
        metrics = {
            "loss": loss,
            "accuracy": aux["accuracy"],
            "grad_norm": global_norm(grads),
            "lr": schedule(state.step),
        }
        return next_state, metrics

    return step
