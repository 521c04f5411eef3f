"""The one-read kernel (peft_core.one_read, Pallas' interpreter on the CPU) against numpy: both
products, the rows and shapes it leaves to XLA, and its errors."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from peft_core import one_read
from peft_core.one_read import Tiles


def uses_kernel(fn: Any, *args: Any) -> bool:
    """Whether tracing ``fn(*args)`` (afresh: not from jit's cache) emits a Pallas call."""
    return "pallas_call" in str(jax.make_jaxpr(lambda *xs: fn(*xs))(*args))


@pytest.mark.parametrize(
    ("m", "n", "r", "tiles", "kernel"),
    [
        # r = 8: two 16-column tiles' parts packed per step; 3 programs + 8 rows by XLA
        (200, 64, 8, Tiles(rows=16, blocks=4, cols=16), True),
        (128, 64, 3, Tiles(rows=16, blocks=2, cols=16), True),  # rp = 4: four tiles packed
        (96, 96, 5, Tiles(rows=32, blocks=1, cols=16), True),  # rp = 8, 3 steps
        (64, 32, 16, Tiles(rows=32, blocks=1, cols=32), True),  # 16 lanes, nothing packed
        (64, 32, 20, Tiles(rows=16, blocks=1, cols=16), True),  # r padded to 32
        (128, 48, 8, Tiles(rows=16, blocks=2, cols=16), True),  # 2 x 16 columns do not divide
        # 48: one tile a step
        (64, 96, 1, Tiles(rows=16, blocks=2, cols=16), True),  # rank 1: 2 (not 16) tiles a step
        (65, 32, 4, Tiles(rows=16, blocks=2, cols=16), True),  # 2 programs + 1 row by XLA
        (40, 64, 8, Tiles(rows=16, blocks=4, cols=16), False),  # fewer rows than a program's
        (128, 40, 8, Tiles(rows=16, blocks=2, cols=16), False),  # 16 columns do not divide 40
    ],
)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_products_match_numpy(
    m: int, n: int, r: int, tiles: Tiles, kernel: bool, dtype: Any
) -> None:
    k = jax.random.split(jax.random.key(m + n + r), 3)
    a = jax.random.normal(k[0], (m, n)).astype(dtype)
    f = jax.random.normal(k[1], (n, r)).astype(dtype)
    w = jax.random.normal(k[2], (m, r)).astype(dtype)
    run = lambda a, f, w: one_read.products(a, f, w, tiles)  # noqa: E731
    assert uses_kernel(run, a, f, w) is kernel
    af, atw = run(a, f, w)
    an, fn, wn = (np.asarray(t, np.float64) for t in (a, f, w))
    # the operands' products are exact in float32, so only float32 summation separates them
    for got, want in ((af, an @ fn), (atw, an.T @ wn)):
        assert got.dtype == jnp.float32 and got.shape == want.shape
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-4)


def test_products_accumulate_float64_in_float64() -> None:
    with jax.enable_x64(True):
        a = jax.random.normal(jax.random.key(0), (64, 32), jnp.float64)
        f = jax.random.normal(jax.random.key(1), (32, 4), jnp.float64)
        w = jax.random.normal(jax.random.key(2), (64, 4), jnp.float64)
        tiles = Tiles(rows=16, blocks=2, cols=16)
        af, atw = one_read.products(a, f, w, tiles)
        assert af.dtype == atw.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(af), np.asarray(a) @ np.asarray(f), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(atw), np.asarray(a).T @ np.asarray(w), rtol=1e-12)


def test_products_use_the_default_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    a, f, w = jnp.ones((64, 64)), jnp.ones((64, 8)), jnp.ones((64, 8))
    assert not uses_kernel(one_read.products, a, f, w)  # 64 rows < 128 x 2
    monkeypatch.setattr(one_read, "TILES", Tiles(rows=16, blocks=4, cols=32))
    assert uses_kernel(one_read.products, a, f, w)


@pytest.mark.parametrize(
    ("shapes", "tiles", "error"),
    [
        (((64, 32), (16, 2), (64, 2)), Tiles(), r"a \(M, L\), f \(L, r\), w \(M, r\)"),
        (((64, 32), (32, 2), (63, 2)), Tiles(), r"a \(M, L\), f \(L, r\), w \(M, r\)"),
        (((64, 32), (32, 2), (64, 2)), Tiles(rows=24), "powers of two >= 16"),
        (((64, 32), (32, 2), (64, 2)), Tiles(cols=8), "powers of two >= 16"),
        (((64, 32), (32, 2), (64, 2)), Tiles(blocks=0), "blocks >= 1"),
    ],
)
def test_products_refuse_bad_input(shapes: Any, tiles: Tiles, error: str) -> None:
    a, f, w = (jnp.ones(s) for s in shapes)
    with pytest.raises(ValueError, match=error):
        one_read.products(a, f, w, tiles)


@pytest.mark.parametrize(
    ("tiles", "expected"),
    [
        (Tiles(128, 4, 32, 8, 2), 104_448),  # one buffer of the a tiles: cols < 64
        (Tiles(128, 2, 64, 8, 2), 159_744),  # two: Hopper's wgmma path pipelines deeper
        (Tiles(64, 4, 32, 4, 3), 90_112),
        (Tiles(128, 2, 32, 8, 3), 90_112),
        (Tiles(128, 4, 32, 8, 3), 172_032),
        (Tiles(64, 8, 32, 4, 2), 104_448),
        (Tiles(128, 4, 32, 8, 4), 239_616),  # over the 232,448 bytes of a CUDA block
        (Tiles(64, 4, 32, 4, 4), 124_928),
        (Tiles(64, 2, 32, 4, 3), 49_152),
        (Tiles(64, 2, 64, 4, 3), 122_880),
        (Tiles(64, 4, 64, 4, 3), 229_376),
    ],
)
def test_shared_memory_matches_what_triton_allocated(tiles: Tiles, expected: int) -> None:
    # the bytes Triton 3.9.0 allocated compiling the kernel for sm_90 at rank 8 (bf16) on the
    # CPU machine: bench/runs/2026-12-02-h200/cpu-triton/report.txt (3.5.1: up to 1 KiB less)
    assert one_read.shared_memory_bytes(tiles, 8) == expected


def test_products_refuse_tiles_over_a_blocks_shared_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # only where Triton compiles it: the interpreter (CPU) has no shared memory to run out of
    a, f, w = jnp.ones((1024, 64), jnp.bfloat16), jnp.ones((64, 8)), jnp.ones((1024, 8))
    too_deep = Tiles(128, 4, 32, 8, 4)
    if jax.default_backend() == "cpu":
        assert uses_kernel(lambda *args: one_read.products(*args, too_deep), a, f, w)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    with pytest.raises(ValueError, match="need about 239,616 bytes of shared memory at rank 8"):
        one_read.products(a, f, w, too_deep)
    # the default tiles take XLA's dots where they do not fit (float64: 354,304 bytes)
    with jax.enable_x64(True):
        wide = (a.astype(jnp.float64), f.astype(jnp.float64), w.astype(jnp.float64))
        assert one_read.shared_memory_bytes(one_read.TILES, 8, 8) > one_read.SHARED_MEMORY
        assert not uses_kernel(one_read.products, *wide)
        monkeypatch.setattr(one_read, "TILES", too_deep._replace(stages=2, blocks=1))
        assert uses_kernel(one_read.products, *wide)


@pytest.mark.parametrize("m", [64, 8])  # the kernel's shape, and one it would leave to XLA
def test_products_refuse_tpu(monkeypatch: pytest.MonkeyPatch, m: int) -> None:
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    a, f, w = jnp.ones((m, 32)), jnp.ones((32, 8)), jnp.ones((m, 8))
    with pytest.raises(ValueError, match="not on 'tpu': use grads='auto'"):
        one_read.products(a, f, w, Tiles(rows=16, blocks=1, cols=16))


def test_products_on_a_gpu_need_the_triton_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    # jax 0.11 deprecates Pallas' Triton backend; a JAX without it gets a clear error, not an
    # ImportError from inside the lowering
    assert one_read.triton_available()  # this JAX (pinned below 0.12) has it
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(one_read, "triton_available", lambda: False)
    a, f, w = jnp.ones((64, 32)), jnp.ones((32, 8)), jnp.ones((64, 8))
    with pytest.raises(ValueError, match=r"no longer has \(jax.experimental.pallas.triton\)"):
        one_read.products(a, f, w, Tiles(rows=16, blocks=1, cols=16))


@pytest.mark.parametrize("tiles", [one_read.TILES, Tiles(rows=64, blocks=4, cols=64, warps=4)])
def test_products_lower_to_triton_for_cuda(tiles: Tiles, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pallas lowers the kernel to Triton's dialect on this CPU machine when exported for CUDA
    # (ViT-B/16's fc1 output gradient at batch 256): what a GPU compiles, less Triton's own
    # passes; rank 8 packs two column tiles' partial sums in 16 lanes
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    m, n, r = 50688, 3072, 8
    args = [jax.ShapeDtypeStruct(s, jnp.bfloat16) for s in ((m, n), (n, r), (m, r))]
    triton = "__gpu$xla.gpu.triton"
    # the GPU to lower for (jax 0.11 asks the mesh's device for its compute capability)
    gpu = jax.sharding.AbstractDevice(device_kind="NVIDIA H100", num_cores=132, platform="gpu")
    with jax.sharding.use_abstract_mesh(
        jax.sharding.AbstractMesh((1,), ("data",), abstract_device=gpu)
    ):
        exported = jax.export.export(
            jax.jit(lambda a, f, w: one_read.products(a, f, w, tiles)),
            platforms=["cuda"],
            disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(triton)],
        )(*args)
    calls = [line for line in exported.mlir_module().splitlines() if triton in line]
    assert len(calls) == 1
    programs = m // (tiles.rows * tiles.blocks)
    fields = [f"grid_x = {programs} ", f"num_warps = {tiles.warps} ",
              f"num_stages = {tiles.stages} ", f"tensor<{programs}x{n // 2}x16xf32>"]  # fmt: skip
    for field in fields:
        assert field in calls[0]


def test_products_on_several_devices_need_a_mesh(monkeypatch: pytest.MonkeyPatch) -> None:
    a, f, w = jnp.ones((64, 32)), jnp.ones((32, 8)), jnp.ones((64, 8))
    tiles = Tiles(rows=16, blocks=1, cols=16)
    monkeypatch.setattr(jax, "device_count", lambda: 2)
    with pytest.raises(ValueError, match="on 2 devices needs the mesh that splits its rows"):
        one_read.products(a, f, w, tiles)
    # a shape the kernel would leave to XLA needs no mesh
    assert not uses_kernel(lambda *args: one_read.products(*args, tiles), a[:8], f, w[:8])
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):  # one device's rows: no shard_map
        assert uses_kernel(lambda *args: one_read.products(*args, tiles), a, f, w)


@pytest.mark.parametrize(
    ("m", "kernel"),
    [(64, True), (66, True), (65, False)],  # 32 and 33 rows a device; 65 does not split in two
)
def test_products_under_a_mesh_split_only_rows_that_divide(m: int, kernel: bool) -> None:
    # a mesh of two devices (abstract: traced, not run) splits a's rows between them; rows that
    # do not split evenly go to XLA's dots, which XLA partitions itself. Its axis is Auto, as the
    # trainer's jax.sharding.Mesh (AbstractMesh's default is Explicit from jax 0.11)
    a, f, w = jnp.ones((m, 32)), jnp.ones((32, 8)), jnp.ones((m, 8))
    tiles = Tiles(rows=16, blocks=1, cols=16)
    mesh = jax.sharding.AbstractMesh((2,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    with jax.sharding.use_abstract_mesh(mesh):
        assert uses_kernel(lambda *args: one_read.products(*args, tiles), a, f, w) is kernel
