"""init_on_host: the same param tree and numbers as an init where jax runs, cuDNN ViTs included."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.models.host_init import init_on_host
from experiments.models.vit import vit

IMAGES = np.zeros((1, 32, 32, 3), np.float32)


def assert_same_draws(params, expected):
    """The same numbers; on a backend other than the host's, up to its rounding of the draws."""
    rtol = 0 if jax.default_backend() == "cpu" else 1e-6
    chex.assert_trees_all_close(params, expected, atol=1e-7, rtol=rtol)


def _tiny_vit(**options):
    return vit("Ti", patch=16, depth=2, num_classes=5, dtype=jnp.bfloat16, **options)


@pytest.mark.parametrize(
    "model",
    [_tiny_vit(), _tiny_vit(attn_implementation="xla", attn_pad_to=4), nn.Dense(7)],
    ids=["vit", "vit-padded", "dense"],
)
def test_matches_jitted_init(model):
    rng = jax.random.key(3)
    inputs = IMAGES if not isinstance(model, nn.Dense) else np.ones((2, 3), np.float32)
    expected = jax.jit(model.init)(rng, inputs)["params"]
    params = init_on_host(model, rng, inputs)
    assert_same_draws(params, expected)
    chex.assert_trees_all_equal_shapes_and_dtypes(params, expected)
    for leaf in jax.tree.leaves(params):
        assert leaf.devices() == {jax.devices()[0]}
        assert not leaf.committed  # jit places it with its other inputs, on any device


def test_cudnn_vit_initialises_without_a_gpu():
    """cuDNN attention has no CPU kernel; its params are those of the same ViT with XLA's.

    (A jitted init of it on the CPU raises "cuDNN is not detected" where jaxlib has no CUDA
    plugin; with one, as jax 0.11.2 on a GPU machine under JAX_PLATFORMS=cpu, it traces and
    the unused attention is pruned: JAX's behaviour, not asserted here.)"""
    rng = jax.random.key(4)
    cudnn = _tiny_vit(attn_implementation="cudnn")
    params = init_on_host(cudnn, rng, IMAGES)
    expected = jax.jit(_tiny_vit().init)(rng, IMAGES)["params"]
    assert_same_draws(params, expected)


def test_without_a_cpu_backend_inits_where_jax_runs(monkeypatch):
    def no_cpu(backend=None, **kwargs):
        raise RuntimeError(f"Unknown backend {backend}")

    monkeypatch.setattr(jax, "local_devices", no_cpu)
    model = _tiny_vit()
    rng = jax.random.key(5)
    chex.assert_trees_all_close(
        init_on_host(model, rng, IMAGES), jax.jit(model.init)(rng, IMAGES)["params"], atol=0
    )
