"""Per-leaf digests of a pytree's bits: a checkpoint damaged after its save reads back wrong.

Orbax checksums its tree nodes but not the array chunks: a flipped byte in a data file restores
silently as other numbers. The checkpointer stores these digests with the state and compares them
after a restore. A leaf's digest is computed on its devices (sharded arrays included, every
process gets the same value):

    digest(x) = sum_i bits_i * (2 i + 1)  (mod 2^32),

bits_i the i-th unsigned 32-bit word of x in row-major order (narrower dtypes widened, wider ones
split). Every weight is odd, so flipping any one bit changes the digest, and the sum does not
depend on how the array is sharded.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

_UNSIGNED = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}


def _words(x: jax.Array) -> jax.Array:
    """x's bits as a flat uint32 vector (complex: real and imaginary parts; bool: one byte)."""
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        x = jnp.stack([x.real, x.imag])
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    bits = jax.lax.bitcast_convert_type(x, _UNSIGNED[x.dtype.itemsize])
    return bits.astype(jnp.uint32).ravel()


@jax.jit
def _leaf_digests(leaves: list[jax.Array]) -> list[jax.Array]:
    out = []
    for leaf in leaves:
        words = _words(leaf)
        weights = jnp.arange(words.size, dtype=jnp.uint32) * jnp.uint32(2) + jnp.uint32(1)
        out.append(jnp.sum(words * weights, dtype=jnp.uint32))
    return out


def tree_digest(tree: Any) -> dict[str, int]:
    """{keystr path: digest} of every array leaf of ``tree`` (see the module docstring)."""
    items = jax.tree_util.tree_leaves_with_path(tree)
    digests = _leaf_digests([jnp.asarray(leaf) for _, leaf in items])
    return {jax.tree_util.keystr(path): int(d) for (path, _), d in zip(items, digests, strict=True)}
