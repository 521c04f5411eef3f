"""Data parallelism: train() on 2 (fake CPU) devices ends where the 1-device run ends."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap
from typing import Any

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from experiments.data.pipeline import TrainBatches
from experiments.placement import put_global
from experiments.training.sharding import batch_sharded, data_mesh, is_main_process, replicated

TESTS_DIR = pathlib.Path(__file__).parent

# Trains the switch supernet (K=2 subnets per step, dropout) for a few steps with evaluation,
# and saves the final trainable leaves, optimiser state, losses and eval accuracy to argv[1].
SCRIPT = textwrap.dedent(
    """
    import sys

    import jax
    import numpy as np
    from test_training import (
        dropout_forward, quick_config, switch_adapter, toy_batches, toy_params, toy_task,
    )

    from experiments.training import train
    from experiments.training.sharding import check_batch_split, data_mesh

    out, devices = {}, jax.device_count()
    check_batch_split(16, data_mesh(), num_configs=4)
    if devices == 2:
        for batch, k, error in (
            (15, 1, "batch size 15 is not divisible by the 2 devices"),
            (12, 4, "its 3 groups of 4 examples do not split over the 2 devices"),
        ):
            try:
                check_batch_split(batch, data_mesh(), num_configs=k)
                raise AssertionError(f"batch {batch} with {k} subnets on 2 devices was accepted")
            except ValueError as err:
                assert error in str(err), err
    eval_data = toy_task(37, seed=3)
    result = train(
        quick_config(total_steps=5, num_configs=2, eval_batch_size=7),  # 8 on 2 devices
        forward=dropout_forward,
        params=toy_params(),
        adapter=switch_adapter(),
        train_data=toy_batches(),
        workdir=sys.argv[1] + "_workdir",
        eval_data=eval_data,
    )
    state = (result.state.trainable, result.state.opt_state)
    for i, leaf in enumerate(jax.tree.leaves(state)):
        assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == devices
        out[f"state/{i}"] = np.asarray(leaf)
    out["losses"] = np.array([v for _, v in result.history["train/loss"]])
    out["eval"] = np.array(result.eval_accuracy)
    np.savez(sys.argv[1], devices=devices, **out)
    """
)


def run_on_devices(
    num_devices: int, tmp_path: pathlib.Path, script: str = SCRIPT
) -> dict[str, np.ndarray]:
    """Run ``script`` in a fresh process with ``num_devices`` host devices; its saved arrays."""
    env = dict(os.environ)
    flags = f"--xla_force_host_platform_device_count={num_devices}"
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}".strip()  # keeps conftest's
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")])
    out = tmp_path / f"devices{num_devices}.npz"
    done = subprocess.run(
        [sys.executable, "-c", script, str(out)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(out))


@pytest.mark.slow
def test_two_device_training_equals_one_device(tmp_path: pathlib.Path) -> None:
    one, two = run_on_devices(1, tmp_path), run_on_devices(2, tmp_path)
    assert (int(one.pop("devices")), int(two.pop("devices"))) == (1, 2)
    assert one.keys() == two.keys()
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_put_global_places_batches_and_replicas() -> None:
    mesh = data_mesh()
    x = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    placed = put_global(x, batch_sharded(mesh))
    np.testing.assert_array_equal(placed, x)
    assert placed.sharding == batch_sharded(mesh)
    assert put_global(x, replicated(mesh)).sharding.is_fully_replicated
    stacked = put_global(x.reshape(2, 4, 3), batch_sharded(mesh, batch_axis=1))
    assert stacked.sharding.spec == PartitionSpec(None, "data")


@pytest.mark.parametrize("index", [0, 1, 3])
def test_only_process_0_is_the_main_process(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jax, "process_index", lambda: index)
    assert is_main_process() is (index == 0)


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
def test_put_global_fills_device_arrays_and_keys_from_the_process_copy(
    impl: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With several processes, process-local jax arrays and PRNG keys (the train state's) are
    placed slice by slice like numpy arrays, keys as their key data (of their own
    implementation, not the default one), and come back equal."""
    x, key = jax.numpy.arange(8.0).reshape(4, 2), jax.random.key(5, impl=impl)
    calls: list[tuple[int, ...]] = []
    make = jax.make_array_from_callback

    def counting(shape: tuple[int, ...], *args: Any, **kwargs: Any) -> jax.Array:
        calls.append(shape)
        return make(shape, *args, **kwargs)

    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "make_array_from_callback", counting)
    placed = put_global({"x": x, "key": key}, replicated(data_mesh()))
    assert sorted(calls) == sorted([x.shape, jax.random.key_data(key).shape])
    np.testing.assert_array_equal(placed["x"], x)
    assert placed["key"].dtype == key.dtype
    np.testing.assert_array_equal(jax.random.key_data(placed["key"]), jax.random.key_data(key))


# One LoRA step with grads="pallas" (the one-read kernel, interpreted) and grads="weight" on the
# devices of the process, the trainer's jitted step on a "data" mesh over all of them, and with
# "auto" on a device kind it reads once on (this one's, added); saves the trainable trees to
# argv[1] and checks that the kernel ran, inside a shard_map on 2 devices.
PALLAS_SCRIPT = textwrap.dedent(
    """
    import sys

    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import peft_core
    import peft_core.activation_grads as ag
    from experiments.placement import put_global
    from experiments.training.sharding import (
        batch_sharded, data_mesh, jit_train_step, replicated,
    )
    from experiments.training.state import create_state
    from experiments.training.step import make_train_step
    from peft_core import one_read

    ag.MIN_TAP_ROWS, ag.MIN_TAP_INTENSITY = 0, 0  # tap every layer and call
    ag.ONE_READ_MIN_ROWS = {jax.devices()[0].device_kind: 0}
    one_read.TILES = one_read.Tiles(rows=16, blocks=2, cols=16)  # 32 rows: one program a device


    class Tokens(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.gelu(nn.Dense(64, name="dense_0")(x))  # dy read once (64 >= 16)
            x = nn.gelu(nn.Dense(32, name="dense_1")(x))  # x read once (64 > 32)
            return nn.Dense(4, name="head")(jnp.mean(x, axis=1))


    model, mesh = Tokens(), data_mesh()
    x = jax.random.normal(jax.random.key(0), (8, 8, 16))  # 64 rows: 32 a device on 2
    labels = jnp.arange(8) % 4
    params = model.init(jax.random.key(1), x)["params"]
    backbone = put_global({k: v for k, v in params.items() if k != "head"}, replicated(mesh))
    forward = lambda p, inputs, *, train, rng: model.apply({"params": p}, inputs)
    out = {}
    for grads in ("weight", "pallas", "auto"):
        adapter = peft_core.lora(8, targets=r"dense_\\d/kernel", grads=grads)
        keys = iter(jax.random.split(jax.random.key(3), 8))
        aparams = jax.tree.map(lambda a: 0.1 * jax.random.normal(next(keys), a.shape),
                               adapter.init(jax.random.key(2), params))
        trainable = {"adapter": aparams, "head": {"head": params["head"]}}
        optimizer = optax.sgd(0.5)
        step = make_train_step(forward=forward, adapter=adapter, optimizer=optimizer,
                               schedule=lambda s: 0.5)
        state = put_global(create_state(trainable, optimizer, jax.random.key(5)), replicated(mesh))
        jitted = jit_train_step(step, mesh, state)
        packed = jitted.pack(state)
        batch = (put_global(x, batch_sharded(mesh)), put_global(labels, batch_sharded(mesh)))
        jaxpr = str(jitted.step.trace(packed, backbone, *batch).jaxpr)
        kernel = grads != "weight"
        assert ("pallas_call" in jaxpr) is kernel, grads
        assert ("shard_map" in jaxpr) is (kernel and jax.device_count() > 1), grads
        packed, _ = jitted.step(packed, backbone, *batch)
        for key, leaf in enumerate(jax.tree.leaves(jitted.unpack(packed).trainable)):
            out[f"{grads}/{key}"] = np.asarray(leaf)
    np.savez(sys.argv[1], devices=jax.device_count(), **out)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("num_devices", [1, 2])
def test_pallas_grads_train_on_a_data_mesh(num_devices: int, tmp_path: pathlib.Path) -> None:
    """The one-read kernel runs on each device's rows (shard_map, aᵀw summed over devices):
    one step on 1 and 2 devices equals weight-space LoRA's, with grads "pallas" and with "auto"
    where it reads once."""
    saved = run_on_devices(num_devices, tmp_path, PALLAS_SCRIPT)
    assert int(saved.pop("devices")) == num_devices
    assert any(k.startswith("auto/") for k in saved)
    for key in [k for k in saved if not k.startswith("weight/")]:
        want = saved["weight/" + key.split("/", 1)[1]]
        np.testing.assert_allclose(saved[key], want, rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("num_processes", [1, 2])
def test_train_batches_fill_each_device_from_its_process_copy(
    num_processes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With several processes the split is placed by slices of the process's own copy
    (``jax.make_array_from_callback``), not by ``jax.device_put`` of the whole host array,
    which checks and gathers every process's copy on every device; the batches are the same."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 4, 4, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 12).astype(np.int32)
    expected = TrainBatches(images, labels, batch_size=4, seed=1, mesh=data_mesh())
    calls: list[tuple[int, ...]] = []
    make = jax.make_array_from_callback

    def counting(shape: tuple[int, ...], *args: object, **kwargs: object) -> jax.Array:
        calls.append(shape)
        return make(shape, *args, **kwargs)

    monkeypatch.setattr(jax, "process_count", lambda: num_processes)
    monkeypatch.setattr(jax, "make_array_from_callback", counting)
    batches = TrainBatches(images, labels, batch_size=4, seed=1, mesh=data_mesh())
    assert calls == ([] if num_processes == 1 else [images.shape, labels.shape])
    for step in range(5):
        for got, want in zip(batches.batch(step), expected.batch(step), strict=True):
            np.testing.assert_array_equal(got, want)
            assert got.sharding == want.sharding
