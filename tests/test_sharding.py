"""Data parallelism: train() on 2 (fake CPU) devices ends where the 1-device run ends."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from jax.sharding import PartitionSpec

from experiments.training.sharding import batch_sharded, data_mesh, put_global, replicated

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
    from experiments.training.sharding import check_divisible, data_mesh

    out, devices = {}, jax.device_count()
    if devices == 2:
        try:
            check_divisible(15, data_mesh(), what="batch size")
            raise AssertionError("an odd batch on 2 devices was accepted")
        except ValueError as err:
            assert "batch size 15 is not divisible by the 2 devices" in str(err), err
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


def run_on_devices(num_devices: int, tmp_path: pathlib.Path) -> dict[str, np.ndarray]:
    """Run SCRIPT in a fresh process with ``num_devices`` host devices; its saved arrays."""
    env = dict(os.environ)
    flags = f"--xla_force_host_platform_device_count={num_devices}"
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}".strip()  # keeps conftest's
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")])
    out = tmp_path / f"devices{num_devices}.npz"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out)], env=env, capture_output=True, text=True
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
