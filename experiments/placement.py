"""Host arrays onto a mesh, with one process or many.

Every process of a multi-host run loads the same data (deterministic loaders, sorted files) and
computes the same global arrays; each device takes its own slice of them.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding


def put_global(tree: Any, sharding: NamedSharding) -> Any:
    """Every leaf (the full global array, identical on every process) placed with ``sharding``.

    One process: ``jax.device_put`` (a no-op for arrays already laid out so). Several: arrays
    already spanning processes are resharded by ``jax.device_put``; for the others each device
    is filled with its slice of the process's copy (``jax.make_array_from_callback``).
    """
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(x: Any) -> jax.Array:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return jax.device_put(x, sharding)
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(
                put(jax.random.key_data(x)), impl=jax.random.key_impl(x)
            )
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)
