"""A pytree's floating leaves packed into one flat buffer per dtype, and back.

A jitted call pays host time for every argument and result buffer (the runtime tracks each
one: usage holds, donation, a new output buffer with its ready event). A GLoRA supernet's
training state has over a thousand leaves (five support tensors per layer, each factor with
two Adam moments), and on one GPU at batch 64 that bookkeeping takes about as long as the step
itself, so the loop waits on the host. Packed, the state is a handful of buffers:

    pack:   leaves of dtype t, each raveled, concatenated in tree order -> buffers[t] (n_t,)
    unpack: buffers[t][offset : offset + size].reshape(shape) for every leaf

Leaves that are not floating point (step counters, PRNG keys) are passed through unchanged.
Both directions are pure slicing and concatenation: inside a jitted step XLA fuses them into
their consumers, and ``unpack(pack(tree))`` is ``tree`` exactly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Packed(NamedTuple):
    """buffers: {dtype name: 1-D array of every floating leaf of that dtype};
    rest: the other leaves, in tree order."""

    buffers: dict[str, jax.Array]
    rest: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class _Slot:
    """Where one leaf lives: in ``buffers[dtype]`` at ``offset`` (dtype None: in ``rest``)."""

    dtype: str | None
    offset: int
    shape: tuple[int, ...]


def _packs(x: Any) -> bool:
    return jnp.issubdtype(x.dtype, jnp.floating)


@dataclasses.dataclass(frozen=True)
class Packing:
    """The layout of one tree structure; build it with ``Packing.of(tree)`` (arrays or
    ``jax.ShapeDtypeStruct`` leaves). Hashable, so it can close over a jitted function."""

    treedef: Any
    slots: tuple[_Slot, ...]

    @classmethod
    def of(cls, tree: Any) -> Packing:
        leaves, treedef = jax.tree.flatten(tree)
        sizes: dict[str, int] = {}
        slots = []
        for leaf in leaves:
            if not _packs(leaf):
                slots.append(_Slot(None, 0, tuple(leaf.shape)))
                continue
            name = jnp.dtype(leaf.dtype).name
            slots.append(_Slot(name, sizes.get(name, 0), tuple(leaf.shape)))
            sizes[name] = sizes.get(name, 0) + math.prod(leaf.shape)
        return cls(treedef, tuple(slots))

    def pack(self, tree: Any) -> Packed:
        """``tree`` -> ``Packed``; a ValueError if its structure, a shape or a dtype differs."""
        leaves, treedef = jax.tree.flatten(tree)
        if treedef != self.treedef:
            raise ValueError(f"cannot pack a tree of structure {treedef}; expected {self.treedef}")
        groups: dict[str, list[jax.Array]] = {}
        rest = []
        for leaf, slot in zip(leaves, self.slots, strict=True):
            if tuple(np.shape(leaf)) != slot.shape:
                raise ValueError(f"leaf of shape {np.shape(leaf)} where {slot.shape} was packed")
            if slot.dtype is None:
                rest.append(leaf)
                continue
            if jnp.dtype(leaf.dtype).name != slot.dtype:
                raise ValueError(f"leaf of dtype {leaf.dtype} where {slot.dtype} was packed")
            groups.setdefault(slot.dtype, []).append(jnp.ravel(leaf))
        buffers = {name: jnp.concatenate(parts) for name, parts in groups.items()}
        return Packed(buffers, tuple(rest))

    def unpack(self, packed: Packed) -> Any:
        """The tree ``pack`` was given, from its ``Packed`` form."""
        rest = iter(packed.rest)
        leaves = []
        for slot in self.slots:
            if slot.dtype is None:
                leaves.append(next(rest))
                continue
            size = math.prod(slot.shape)
            flat = jax.lax.slice_in_dim(packed.buffers[slot.dtype], slot.offset, slot.offset + size)
            leaves.append(flat.reshape(slot.shape))
        return jax.tree.unflatten(self.treedef, leaves)
