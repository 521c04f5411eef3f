"""Initialise a model's params on the host CPU, then put them on the default device.

``model.init`` traces one forward pass; compiling it for a GPU costs far more than running it on
the host: for a random ViT-B/16 with cuDNN attention on an H200, 29.2 s to compile on the GPU
against 7.6 s to compile and run on the host plus 0.1 s to copy the 86M params over
(docs/benchmarks.md, call 29). cuDNN attention has no CPU kernel, so a ViT is traced with XLA's
attention and no token padding there: attention owns no params, so the tree is the same.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import numpy as np

from experiments.models.vit import ViT
from peft_core.paths import Params


def init_on_host(model: nn.Module, rng: jax.Array, inputs: np.ndarray) -> Params:
    """``model.init(rng, inputs)["params"]``, computed on the host CPU where jax has one, as
    uncommitted arrays on the default device (the same numbers as an init on that device, up to
    the backends' rounding of the random draws)."""
    try:
        host = jax.local_devices(backend="cpu")[0]
    except RuntimeError:  # e.g. JAX_PLATFORMS=cuda: no CPU backend, init where jax runs
        return jax.jit(model.init)(rng, inputs)["params"]
    if isinstance(model, ViT):
        model = model.clone(
            config=dataclasses.replace(model.config, attn_implementation=None, attn_pad_to=None)
        )
    with jax.default_device(host):
        params = jax.jit(model.init)(jax.device_put(rng, host), inputs)["params"]
    return jax.device_put(jax.tree.map(np.asarray, params))
