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
    The two sides are ``core_side`` and ``kronecker_side``; ``core_on_input`` says which is U.
    """
    order = len(factors)
    n_stack = core.ndim - order
    _check_shapes(core.shape[n_stack:], [f.shape[n_stack:] for f in factors])
    if not 1 <= num_in < order:
        raise ValueError(f"num_in must be in [1, {order - 1}] for order {order}, got {num_in}")
    ins, outs = factors[:num_in], factors[num_in:]
    if core_on_input(core.shape[n_stack:], num_in):
        return core_side(core, ins, True), kronecker_side(outs, output=True)
    return kronecker_side(ins, output=False), core_side(core, outs, False)


def core_on_input(ranks: Sequence[int], num_in: int) -> bool:
    """Whether ``matrix_factors`` puts the core into U: R_in = r_1 ... r_k > R_out."""
    return math.prod(ranks[:num_in]) > math.prod(ranks[num_in:])


def core_side(core: jax.Array, factors: Sequence[jax.Array], on_input: bool) -> jax.Array:
    """The matrix view's factor that holds the core, from the factors of its side's modes.

    on_input:  G ×1 U_1 ... ×k U_k unfolded to (*stack, fan_in, R_out), ``factors`` U_1 ... U_k;
    else:      G ×k+1 U_k+1 ... ×N U_N unfolded to (*stack, R_in, fan_out), ``factors`` the rest.
    """
    order = core.ndim - (factors[0].ndim - 2)
    ranks = string.ascii_lowercase[:order]
    dims = string.ascii_uppercase[:order]
    k = len(factors) if on_input else order - len(factors)
    side = range(k) if on_input else range(k, order)
    spec = ",".join(f"...{dims[n]}{ranks[n]}" for n in side)
    out = f"...{dims[:k]}{ranks[k:]}" if on_input else f"...{ranks[:k]}{dims[k:]}"
    x = jnp.einsum(f"...{ranks},{spec}->{out}", core, *factors)
    stack = x.shape[: x.ndim - order]
    fan = math.prod(f.shape[-2] for f in factors)
    inner = math.prod(x.shape[len(stack) :]) // fan
    return x.reshape(*stack, fan, inner) if on_input else x.reshape(*stack, inner, fan)


def kronecker_side(factors: Sequence[jax.Array], *, output: bool) -> jax.Array:
    """U_1 ⊗ ... ⊗ U_m of (*stack, dim_n, r_n) factors: (*stack, prod dims, prod ranks), or
    its transpose (*stack, prod ranks, prod dims) for the output side."""
    m = len(factors)
    ranks, dims = string.ascii_lowercase[:m], string.ascii_uppercase[:m]
    spec = ",".join(f"...{d}{r}" for d, r in zip(dims, ranks, strict=True))
    x = jnp.einsum(f"{spec}->...{ranks + dims if output else dims + ranks}", *factors)
    stack = x.shape[: x.ndim - 2 * m]
    fan = math.prod(f.shape[-2] for f in factors)
    inner = math.prod(f.shape[-1] for f in factors)
    return x.reshape(*stack, inner, fan) if output else x.reshape(*stack, fan, inner)
