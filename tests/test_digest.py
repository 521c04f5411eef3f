"""experiments.training.digest against a numpy reference: sum_i bits_i (2 i + 1) mod 2^32."""

from __future__ import annotations

import pathlib
import textwrap

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from test_sharding import run_on_devices

from experiments.training.digest import tree_digest


def _reference(x: np.ndarray) -> int:
    """The digest from x's bytes in numpy (complex: real parts, then imaginary parts)."""
    if np.iscomplexobj(x):
        x = np.stack([x.real, x.imag])
    width = x.dtype.itemsize
    words = x.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[width]).ravel().astype(np.uint64)
    weights = 2 * np.arange(words.size, dtype=np.uint64) + 1
    return int((words * weights % 2**32).sum() % 2**32)


@pytest.mark.parametrize(
    "dtype",
    [
        np.float32,
        ml_dtypes.bfloat16,
        np.float16,
        np.int8,
        np.uint8,
        np.bool_,
        np.int32,
        np.uint32,
        np.complex64,
    ],  # fmt: skip
)
def test_digest_equals_the_numpy_reference(dtype: type) -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 5, 3)) * 50).astype(dtype)
    if dtype is np.complex64:
        x = x + 1j * rng.standard_normal(x.shape).astype(np.float32)
    got = tree_digest({"a": [x, jnp.asarray(x)]})
    assert got == {"['a'][0]": _reference(x), "['a'][1]": _reference(x)}


@pytest.mark.parametrize(("dtype", "bits"), [(np.float32, 32), (ml_dtypes.bfloat16, 16)])
def test_any_one_flipped_bit_changes_the_digest(dtype: type, bits: int) -> None:
    x = np.random.default_rng(1).standard_normal(9).astype(dtype)
    words = x.view(np.uint32 if bits == 32 else np.uint16)
    before = tree_digest(x)[""]
    for position in (0, 4, 8):
        for bit in range(bits):
            flipped = words.copy()
            flipped[position] ^= words.dtype.type(1 << bit)
            assert tree_digest(flipped.view(dtype))[""] != before, (position, bit)


def test_swapped_elements_change_the_digest() -> None:
    x = np.arange(6, dtype=np.float32)
    assert tree_digest(x[[1, 0, 2, 3, 4, 5]]) != tree_digest(x)


def test_a_sharded_array_has_the_digest_of_its_values(tmp_path: pathlib.Path) -> None:
    script = textwrap.dedent(
        """
        import sys

        import jax
        import numpy as np

        from experiments.placement import put_global
        from experiments.training.digest import tree_digest
        from experiments.training.sharding import batch_sharded, data_mesh, replicated

        x = np.random.default_rng(2).standard_normal((8, 3)).astype(np.float32)
        sharded = put_global(x, batch_sharded(data_mesh()))
        assert len(sharded.sharding.device_set) == jax.device_count()
        digests = [tree_digest(v)[""] for v in (sharded, put_global(x, replicated(data_mesh())))]
        np.savez(sys.argv[1], x=x, digests=np.array(digests, np.uint64))
        """
    )
    out = run_on_devices(2, tmp_path, script)
    assert out["digests"].tolist() == [_reference(out["x"])] * 2
