"""The Tucker product of a core tensor and one factor matrix per mode, as a single einsum."""

from __future__ import annotations

import string
from collections.abc import Sequence

import jax
import jax.numpy as jnp

_MAX_ORDER = len(string.ascii_lowercase)


def tucker_product(core: jax.Array, factors: Sequence[jax.Array]) -> jax.Array:
    """``G x1 U1 x2 U2 ... xN UN`` for a core of any order N.

    ``core`` G has shape (r1, ..., rN) and ``factors[n]`` U_n has shape (dim_n, r_n); the result
    has shape (dim_1, ..., dim_N) with
    ``out[i1..iN] = sum_{j1..jN} G[j1..jN] * U1[i1, j1] * ... * UN[iN, jN]``.
    For N = 2 this is ``U1 @ G @ U2.T``.
    """
    _check_shapes(core, factors)
    return jnp.einsum(_subscripts(core.ndim), core, *factors)


def _subscripts(order: int) -> str:
    """The einsum string of an order-N Tucker product, e.g. N = 2: ``'ab,Aa,Bb->AB'``."""
    if not 1 <= order <= _MAX_ORDER:
        raise ValueError(f"Tucker order must be in [1, {_MAX_ORDER}], got {order}")
    ranks = string.ascii_lowercase[:order]
    dims = string.ascii_uppercase[:order]
    factors = [dim + rank for dim, rank in zip(dims, ranks, strict=True)]
    return f"{','.join([ranks, *factors])}->{dims}"


def _check_shapes(core: jax.Array, factors: Sequence[jax.Array]) -> None:
    if len(factors) != core.ndim:
        raise ValueError(
            f"a core of shape {tuple(core.shape)} needs {core.ndim} factors, got {len(factors)}"
        )
    for n, (factor, rank) in enumerate(zip(factors, core.shape, strict=True)):
        if factor.ndim != 2 or factor.shape[1] != rank:
            raise ValueError(
                f"factor {n} must have shape (dim, {rank}) to match core {tuple(core.shape)}, "
                f"got {tuple(factor.shape)}"
            )
