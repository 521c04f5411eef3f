"""Stochastic depth ("drop path"), shared by the ViT, ConvNeXt and EfficientNet-Lite.

A sample's residual branch x is zeroed with probability ``rate``, else scaled by
1 / (1 - rate): E[drop_path(x)] = x. Rates lie in [0, 1): a rate of 1 divides by zero (NaN
gradients), one outside [0, 1] scales or zeroes every sample.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def check_rate(name: str, rate: float) -> None:
    """ValueError unless 0 <= ``rate`` < 1."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {rate}")


def drop_path(x: jax.Array, rate: jax.Array | float, *, rng: jax.Array) -> jax.Array:
    """Keep each sample's x (axis 0) with prob 1 - rate, scaled by 1 / (1 - rate); else 0."""
    keep = 1.0 - rate
    mask = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / keep, 0.0).astype(x.dtype)


class DropPath(nn.Module):
    """``drop_path`` at a fixed ``rate`` with the 'dropout' rng; identity when
    ``deterministic`` or ``rate == 0``."""

    rate: float

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
        if deterministic or self.rate == 0.0:
            return x
        return drop_path(x, self.rate, rng=self.make_rng("dropout"))
