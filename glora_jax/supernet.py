"""GLoRA supernet training: a fresh random subnet on every step, K of them at once if asked.

The per-step draw happens inside the jitted step: ``cfg`` is data (int arrays), so one compiled
step serves every subnet. With ``num_configs = K`` the batch of B examples is dealt into K shares
(share k = examples k, k + K, k + 2K, ...; B / K each), subnet k runs on share k, and the loss is

    L = (1 / K) * sum_k  L_k(trainable; cfg_k, share_k)

computed with one ``jax.vmap`` over (cfg_k, share_k); with K = 1 the one subnet's loss is called
directly on the whole batch (the same draws, no vmap of size one around the model). The
interleaved deal keeps every share spread over all devices when the batch is sharded in
contiguous blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp

Metrics = dict[str, jax.Array]

#: The axis name of the supernet's ``jax.vmap`` over its K subnets. ``glora_jax.support`` reads
#: its size to lay out the support products for several configs; a vmap over configs without
#: this name computes the same numbers.
CONFIG_AXIS = "glora_configs"


class ConfigSpace(Protocol):
    """What the supernet needs of a search space (``glora_jax.space.GLoRASpace``)."""

    def sample(self, rng: jax.Array, batch_shape: tuple[int, ...] = ()) -> Any:
        """Independent uniform configs (every layer, every tensor), leading ``batch_shape``."""
        ...


#: loss of one subnet: (trainable, images, labels, cfg, rng) -> (scalar loss, metrics)
ConfigLoss = Callable[[Any, jax.Array, jax.Array, Any, jax.Array], tuple[jax.Array, Metrics]]
#: supernet loss: (trainable, images, labels, rng) -> (scalar loss, metrics + "configs")
SupernetLoss = Callable[[Any, jax.Array, jax.Array, jax.Array], tuple[jax.Array, dict[str, Any]]]


def deal_shares(x: jax.Array, num_shares: int) -> jax.Array:
    """(B, ...) -> (B / K, K, ...): column k holds examples k, k + K, ... (share k)."""
    if x.shape[0] % num_shares:
        raise ValueError(
            f"batch of {x.shape[0]} examples cannot be dealt into {num_shares} equal shares"
        )
    return x.reshape(x.shape[0] // num_shares, num_shares, *x.shape[1:])


def supernet_loss(
    config_loss: ConfigLoss, space: ConfigSpace, *, num_configs: int = 1
) -> SupernetLoss:
    """The mean over ``num_configs`` random subnets of ``config_loss``, each on its own share.

    The returned function splits its rng into a config key and a model key
    (``jax.random.split(rng)``), samples ``space.sample(config key, (K,))`` and gives share k
    the k-th of ``jax.random.split(model key, K)`` (K = 1 too): a seed reproduces its subnets.
    Its metrics are ``config_loss``'s averaged over subnets, plus
    ``"configs"``: the K sampled configs (leading axis K), e.g. for logging or testing.
    """
    if num_configs < 1:
        raise ValueError(f"num_configs must be >= 1, got {num_configs}")

    def loss(
        trainable: Any, images: jax.Array, labels: jax.Array, rng: jax.Array
    ) -> tuple[jax.Array, dict[str, Any]]:
        cfg_rng, model_rng = jax.random.split(rng)
        cfgs = space.sample(cfg_rng, (num_configs,))
        model_rngs = jax.random.split(model_rng, num_configs)
        if num_configs == 1:  # the same draws, without a vmap of size one around the whole model
            first = jax.tree.map(lambda c: c[0], cfgs)
            value, metrics = config_loss(trainable, images, labels, first, model_rngs[0])
            return value, {**metrics, "configs": cfgs}
        per_config = jax.vmap(config_loss, in_axes=(None, 1, 1, 0, 0), axis_name=CONFIG_AXIS)
        losses, metrics = per_config(
            trainable,
            deal_shares(images, num_configs),
            deal_shares(labels, num_configs),
            cfgs,
            model_rngs,
        )
        mean_metrics: dict[str, Any] = jax.tree.map(jnp.mean, metrics)
        return jnp.mean(losses), {**mean_metrics, "configs": cfgs}

    return loss
