"""The Tucker product of a core tensor and one factor matrix per mode, as a single einsum, and
its matrix view as a product of two low-rank factors."""

from __future__ import annotations

import math
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
    _check_shapes(core.shape, [f.shape for f in factors])
    return jnp.einsum(_subscripts(core.ndim), core, *factors)


def _subscripts(order: int) -> str:
    """The einsum string of an order-N Tucker product, e.g. N = 2: ``'ab,Aa,Bb->AB'``."""
    if not 1 <= order <= _MAX_ORDER:
        raise ValueError(f"Tucker order must be in [1, {_MAX_ORDER}], got {order}")
    ranks = string.ascii_lowercase[:order]
    dims = string.ascii_uppercase[:order]
    factors = [dim + rank for dim, rank in zip(dims, ranks, strict=True)]
    return f"{','.join([ranks, *factors])}->{dims}"


def _check_shapes(core: tuple[int, ...], factors: Sequence[tuple[int, ...]]) -> None:
    if len(factors) != len(core):
        raise ValueError(
            f"a core of shape {tuple(core)} needs {len(core)} factors, got {len(factors)}"
        )
    for n, (factor, rank) in enumerate(zip(factors, core, strict=True)):
        if len(factor) != 2 or factor[1] != rank:
            raise ValueError(
                f"factor {n} must have shape (dim, {rank}) to match core {tuple(core)}, "
                f"got {tuple(factor)}"
            )


def matrix_factors(
    core: jax.Array, factors: Sequence[jax.Array], num_in: int
) -> tuple[jax.Array, jax.Array]:
    """U, V with U @ V = the Tucker product's matrix view (prod of the first ``num_in`` dims,
    prod of the rest), through the smaller of the two inner ranks R_in = r_1 ... r_k and
    R_out = r_k+1 ... r_N (k = ``num_in``):

        R_in <= R_out:  U = U_1 ⊗ ... ⊗ U_k (fan_in, R_in),  V = G ×k+1 U_k+1 ... ×N U_N
        R_in >  R_out:  U = G ×1 U_1 ... ×k U_k (fan_in, R_out),  V = (U_k+1 ⊗ ... ⊗ U_N)ᵀ

    with the core's unfolding between them. Leading axes shared by the core (*stack, r...) and
    every factor (*stack, dim, r) are stack axes: U (*stack, fan_in, R), V (*stack, R, fan_out).
    """
    order = len(factors)
    stack = core.shape[: core.ndim - order]
    _check_shapes(core.shape[len(stack) :], [f.shape[len(stack) :] for f in factors])
    if not 1 <= num_in < order:
        raise ValueError(f"num_in must be in [1, {order - 1}] for order {order}, got {num_in}")
    ranks = string.ascii_lowercase[:order]
    dims = string.ascii_uppercase[:order]
    spec = [f"...{d}{r}" for d, r in zip(dims, ranks, strict=True)]
    fan_in = math.prod(f.shape[-2] for f in factors[:num_in])
    fan_out = math.prod(f.shape[-2] for f in factors[num_in:])
    r_in = math.prod(core.shape[len(stack) : len(stack) + num_in])
    r_out = math.prod(core.shape[len(stack) + num_in :])
    i_dims, o_dims, i_ranks, o_ranks = dims[:num_in], dims[num_in:], ranks[:num_in], ranks[num_in:]
    if r_in <= r_out:
        u = jnp.einsum(f"{','.join(spec[:num_in])}->...{i_dims}{i_ranks}", *factors[:num_in])
        v = jnp.einsum(
            f"...{ranks},{','.join(spec[num_in:])}->...{i_ranks}{o_dims}", core, *factors[num_in:]
        )
        inner = r_in
    else:
        u = jnp.einsum(
            f"...{ranks},{','.join(spec[:num_in])}->...{i_dims}{o_ranks}", core, *factors[:num_in]
        )
        v = jnp.einsum(f"{','.join(spec[num_in:])}->...{o_ranks}{o_dims}", *factors[num_in:])
        inner = r_out
    return u.reshape(*stack, fan_in, inner), v.reshape(*stack, inner, fan_out)
