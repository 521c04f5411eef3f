"""Input pipeline: on-device training batches by (seed, step), padded prefetched eval batches."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import chex
import jax
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec
from two_processes import outputs, two_processes

from experiments.data.pipeline import (
    TrainBatches,
    data_digest,
    epoch_permutation,
    eval_batches,
    padded_batches,
    prefetch_to_device,
)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def _split(count: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, 2, 2, 3) uint8 images with pixel [0, 0, 0] = example % 256, labels = example."""
    images = np.random.default_rng(count).integers(0, 256, (count, 2, 2, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(count) % 256
    return images, np.arange(count, dtype=np.int32)


@pytest.mark.parametrize(("count", "batch_size"), [(800, 64), (10, 3), (10, 10)])
def test_every_epoch_visits_each_example_at_most_once_drop_last(count: int, batch_size: int):
    images, labels = _split(count)
    batches = TrainBatches(images, labels, batch_size=batch_size, seed=0)
    assert batches.steps_per_epoch == count // batch_size
    orders = []
    for epoch in range(2):
        steps = range(epoch * batches.steps_per_epoch, (epoch + 1) * batches.steps_per_epoch)
        seen = np.concatenate([np.asarray(batches.batch(step)[1]) for step in steps])
        assert len(seen) == batches.steps_per_epoch * batch_size == len(np.unique(seen))
        assert [batches.batch_indices(step)[0] for step in steps] == [epoch] * len(steps)
        orders.append(seen)
    assert not np.array_equal(orders[0], orders[1])


@pytest.mark.parametrize("seed", [3, 2**31 - 1])
def test_batches_are_the_documented_gather_normalised(seed: int):
    images, labels = _split(800)
    batches = TrainBatches(images, labels, batch_size=64, seed=seed, normalization="imagenet")
    for step in (0, 11, 12, 30):  # 12 steps per epoch: 12 and 30 are in later epochs
        epoch, position = divmod(step, 12)
        order = np.asarray(
            jax.random.permutation(jax.random.fold_in(jax.random.key(seed), epoch), 800)
        )
        expected = order[position * 64 : (position + 1) * 64]
        batch_epoch, indices = batches.batch_indices(step)
        assert batch_epoch == epoch
        np.testing.assert_array_equal(indices, expected)
        batch_images, batch_labels = batches.batch(step)
        np.testing.assert_array_equal(batch_labels, expected)
        reference = (images[expected] / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        chex.assert_trees_all_close(np.asarray(batch_images), reference, atol=1e-5)


def test_resuming_at_a_step_gives_the_same_batches():
    images, labels = _split(800)
    run = TrainBatches(images, labels, batch_size=64, seed=7)
    straight = [np.asarray(run.batch(step)[1]) for step in range(20)]
    resumed = TrainBatches(images, labels, batch_size=64, seed=7)
    for step in range(11, 20):
        np.testing.assert_array_equal(resumed.batch(step)[1], straight[step])
    other_seed = TrainBatches(images, labels, batch_size=64, seed=8)
    assert not np.array_equal(other_seed.batch(11)[1], straight[11])


def test_epoch_permutation_is_a_permutation():
    order = np.asarray(epoch_permutation(1, 4, 37))
    np.testing.assert_array_equal(np.sort(order), np.arange(37))


def test_float_images_pass_through_without_normalization():
    images, labels = _split(10)
    floats = images.astype(np.float32) / 255
    batches = TrainBatches(floats, labels, batch_size=3, seed=0)
    batch_images, batch_labels = batches.batch(2)
    chex.assert_trees_all_close(np.asarray(batch_images), floats[np.asarray(batch_labels)])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 11}, r"batch_size must be in \[1, 10\]"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2, "normalization": "imagenet", "floats": True}, "uint8"),
        ({"batch_size": 2, "normalization": "unit"}, "unknown normalization"),
        ({"batch_size": 2, "num_images": 9}, "^9 images but 10 labels$"),
        ({"batch_size": 2, "num_images": 11}, "^11 images but 10 labels$"),
    ],
)
def test_train_batches_errors(kwargs: dict, match: str):
    images, labels = _split(10)
    images = _split(kwargs.pop("num_images", 10))[0]
    if kwargs.pop("floats", False):
        images = images.astype(np.float32)
    with pytest.raises(ValueError, match=match):
        TrainBatches(images, labels, seed=0, **kwargs)


@pytest.mark.parametrize("seed", [-1, 2**31])
def test_train_batches_refuse_a_seed_outside_int32(seed: int):
    """The gather is jitted with the seed as int32 (2**31 raised OverflowError mid-training)."""
    images, labels = _split(10)
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*31\)"):
        TrainBatches(images, labels, batch_size=2, seed=seed)


_SHARDED = textwrap.dedent("""
    import jax, numpy as np
    from jax.sharding import Mesh, PartitionSpec
    from experiments.data.pipeline import TrainBatches, eval_batches
    from experiments.placement import put_global
    mesh = Mesh(np.array(jax.devices()), ("data",))
    images = np.arange(10 * 2 * 2 * 3, dtype=np.uint8).reshape(10, 2, 2, 3)
    labels = np.arange(10, dtype=np.int32)
    sharded = TrainBatches(images, labels, batch_size=4, seed=1, mesh=mesh)
    single = TrainBatches(images, labels, batch_size=4, seed=1)
    assert sharded.images.shape[0] == 12  # padded to a multiple of the 4 devices
    for step in range(6):
        batch_images, batch_labels = sharded.batch(step)
        assert batch_images.sharding.spec == PartitionSpec("data"), batch_images.sharding
        assert len(batch_labels.addressable_shards) == 4
        np.testing.assert_array_equal(batch_labels, single.batch(step)[1])
        np.testing.assert_array_equal(batch_images, single.batch(step)[0])
        assert int(batch_labels.max()) < 10
    try:
        TrainBatches(images, labels, batch_size=6, seed=1, mesh=mesh)
    except ValueError as error:
        assert "does not divide" in str(error)
    else:
        raise AssertionError("batch 6 over 4 devices was accepted")
    sharding = jax.sharding.NamedSharding(mesh, PartitionSpec("data"))
    got = [b.labels for b in eval_batches(images, labels, batch_size=8, sharding=sharding)]
    assert got[1].sharding == sharding
    # several processes: each device takes its own slice of the process's copy
    jax.process_count = lambda: 2
    placed = put_global(images[:8], sharding)
    assert len(placed.addressable_shards) == 4
    for shard in placed.addressable_shards:
        np.testing.assert_array_equal(shard.data, images[:8][shard.index])
    multi = TrainBatches(images, labels, batch_size=4, seed=1, mesh=mesh)
    for step in range(3):
        np.testing.assert_array_equal(multi.batch(step)[0], single.batch(step)[0])
    print("ok")
""")


def test_a_mesh_without_the_data_axis_is_named():
    images, labels = _split(4)
    mesh = Mesh(np.array(jax.devices()[:1]), ("batch",))
    with pytest.raises(ValueError, match=r"mesh has axes \('batch',\), not 'data'"):
        TrainBatches(images, labels, batch_size=2, seed=0, mesh=mesh)
    on_batch = TrainBatches(images, labels, batch_size=2, seed=0, mesh=mesh, data_axis="batch")
    assert on_batch.batch(1)[0].sharding.spec == PartitionSpec("batch")


def test_sharded_over_a_data_axis_matches_unsharded():
    env = {
        **os.environ,
        "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    result = subprocess.run(
        [sys.executable, "-c", _SHARDED], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


_TWO_PROCESSES = textwrap.dedent("""
    import jax, numpy as np
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize()
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from experiments.placement import put_global
    mesh = Mesh(np.array(jax.devices()), ("data",))  # 2 devices of each process
    x = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    rows = put_global({"x": x}, NamedSharding(mesh, PartitionSpec("data")))["x"]
    assert not rows.is_fully_addressable  # each process holds 4 of the 8 rows: no host copy
    replicated = NamedSharding(mesh, PartitionSpec())
    whole = put_global({"x": rows}, replicated)["x"]  # resharded by jax.device_put
    assert whole.sharding == replicated and len(whole.addressable_shards) == 2
    for shard in whole.addressable_shards:
        np.testing.assert_array_equal(shard.data, x)
    print("ok")
""")


def test_an_array_spread_over_processes_is_resharded_on_the_devices():
    """Two CPU processes (jax.distributed): an array that already spans both, which no process
    can read whole, is placed by jax.device_put, the others from each process's host copy."""
    with two_processes(_TWO_PROCESSES, devices=2) as processes:
        done = outputs(processes, status=0, timeout=120)
    for stdout, stderr in done:
        # stdout also holds gloo's "[Gloo] Rank 0 is connected to 3 peer ranks ..."
        assert stdout.splitlines()[-1:] == ["ok"], stdout + stderr


@pytest.mark.parametrize(("count", "batch_size", "num_batches"), [(10, 4, 3), (8, 4, 2), (3, 5, 1)])
def test_padded_batches_mask_only_real_examples(count: int, batch_size: int, num_batches: int):
    images, labels = _split(count)
    batches = list(padded_batches(images, labels.astype(np.int64), batch_size=batch_size,
                                  normalization="minus1_1"))  # fmt: skip
    assert len(batches) == num_batches
    for batch in batches:
        assert batch.labels.dtype == np.int32 and batch.mask.dtype == bool
        chex.assert_shape(
            [batch.images, batch.labels, batch.mask],
            [(batch_size, 2, 2, 3), (batch_size,), (batch_size,)],
        )
    mask = np.concatenate([b.mask for b in batches])
    np.testing.assert_array_equal(mask, np.arange(num_batches * batch_size) < count)
    real_labels = np.concatenate([b.labels for b in batches])[mask]
    np.testing.assert_array_equal(real_labels, labels)
    real_images = np.concatenate([b.images for b in batches])[mask]
    chex.assert_trees_all_close(real_images, images / 127.5 - 1.0, atol=1e-6)
    padding = np.concatenate([b.images for b in batches])[~mask]
    assert not padding.any()


@pytest.mark.parametrize(
    ("count", "num_labels", "batch_size", "match"),
    [
        (4, 4, 0, "^batch_size must be positive, got 0$"),
        (4, 4, -2, "^batch_size must be positive, got -2$"),
        (4, 3, 2, "^4 images but 3 labels$"),
        (3, 4, 2, "^3 images but 4 labels$"),
    ],
    ids=["batch-0", "batch-minus-2", "fewer-labels", "fewer-images"],
)
def test_padded_batches_errors(count: int, num_labels: int, batch_size: int, match: str):
    images, labels = _split(count)[0], _split(num_labels)[1]
    with pytest.raises(ValueError, match=match):
        next(padded_batches(images, labels, batch_size=batch_size))
    with pytest.raises(ValueError, match=match):  # and on device, through the prefetch thread
        next(eval_batches(images, labels, batch_size=batch_size))


def test_data_digest_names_dtypes_shapes_and_bytes():
    """Each change of the split (even one keeping every byte) gives another digest."""
    images, labels = _split(4)
    changed_byte = images.copy()
    changed_byte[3, 1, 1, 2] ^= 1
    variants = [
        (images, labels),
        (changed_byte, labels),
        (images.reshape(4, 4, 3), labels),  # same bytes, other shape
        (images.view(np.int8), labels),  # same bytes, other dtype
        (images, labels.view(np.float32)),
        (images, labels[::-1]),
        (images[:3], labels[:3]),
    ]
    digests = [data_digest(*variant) for variant in variants]
    assert len(set(digests)) == len(variants)
    assert all(len(d) == 20 and set(d) <= set("0123456789abcdef") for d in digests)
    assert data_digest(jax.device_put(images), labels.copy()) == digests[0]


def test_eval_batches_on_device_equal_host_batches():
    images, labels = _split(23)
    host = list(padded_batches(images, labels, batch_size=8))
    device = list(eval_batches(images, labels, batch_size=8, prefetch=2))
    assert all(isinstance(b.images, jax.Array) for b in device)
    chex.assert_trees_all_equal(
        [tuple(b) for b in host], [tuple(np.asarray(x) for x in b) for b in device]
    )


def test_prefetch_raises_producer_errors_and_stops_early():
    def failing() -> Iterator[np.ndarray]:
        yield np.zeros(2)
        raise RuntimeError("disk gone")

    iterator = prefetch_to_device(failing(), size=1)
    np.testing.assert_array_equal(next(iterator), np.zeros(2))
    with pytest.raises(RuntimeError, match="disk gone"):
        next(iterator)
    endless = prefetch_to_device((np.full(1, i) for i in range(10**9)), size=2)
    assert int(next(endless)[0]) == 0
    endless.close()  # joins the producer thread; would hang if it kept running
    with pytest.raises(ValueError, match="positive"):
        next(prefetch_to_device([], size=0))
