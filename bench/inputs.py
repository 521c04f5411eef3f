"""Fresh random inputs on the device: uint8 images and int labels, several sets to rotate."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from experiments.placement import put_global
from experiments.training.sharding import batch_sharded, data_mesh


def one_device_mesh() -> Mesh:
    """The host's first device: where every row but the scaling ones runs (issue #5 times one
    GPU; a row over all of a multi-GPU host's devices would take their MFU against one's peak)."""
    return data_mesh(jax.devices()[:1])


def random_batches(
    *, num_sets: int, batch: int, image_size: int, num_classes: int, mesh: Mesh, seed: int | None
) -> list[tuple[jax.Array, jax.Array]]:
    """``num_sets`` pairs (images uint8 (batch, S, S, 3), labels int32 (batch,)) on ``mesh``.

    seed None draws a fresh seed, so no run times the same data twice.
    """
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31))
    sets = []
    for key in jax.random.split(jax.random.key(seed), num_sets):
        image_key, label_key = jax.random.split(key)
        images = jax.random.bits(image_key, (batch, image_size, image_size, 3), jnp.uint8)
        labels = jax.random.randint(label_key, (batch,), 0, num_classes, jnp.int32)
        sets.append(put_global((images, labels), batch_sharded(mesh)))
    return sets
