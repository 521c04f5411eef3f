"""Data parallelism with ``jax.sharding``: one mesh axis "data" over every device.

Batches are split along "data"; params, optimiser state and the frozen backbone are replicated.
The same code runs on one device, on all devices of a host, and on a multi-host pod (call
``initialize_distributed`` first; every process then computes the same global arrays and each
device takes its own slice, the equivalent of ``jax.make_array_from_process_local_data`` with
the process-local rows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from experiments.training.packing import Packed, Packing
from experiments.training.state import TrainState
from experiments.training.step import TrainStep
from glora_jax.supernet import Metrics
from peft_core.paths import Params

DATA_AXIS = "data"


def initialize_distributed(enabled: bool) -> None:
    """``jax.distributed.initialize()`` (cluster from the environment) when ``enabled``.

    Must run before any other JAX call of the process, i.e. first thing in the driver. Where
    JAX finds no cluster (one host, no coordinator), its ValueError says to leave it off.
    """
    if not enabled:
        return
    try:
        jax.distributed.initialize()
    except ValueError as err:
        raise ValueError(
            f"--distributed found no cluster ({err}): it is for a run over several hosts, in "
            "a cluster JAX detects (a Cloud TPU pod slice, SLURM, Open MPI, Kubernetes); on "
            "one host leave it off"
        ) from err


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with the axis "data" over ``devices`` (default: all global devices)."""
    return Mesh(np.asarray(jax.devices() if devices is None else list(devices)), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh, *, batch_axis: int = 0) -> NamedSharding:
    """Axis ``batch_axis`` split over "data", all others replicated."""
    return NamedSharding(mesh, PartitionSpec(*([None] * batch_axis), DATA_AXIS))


def is_main_process() -> bool:
    """Whether this is process 0, the one that writes a run's shared files (logs, results)."""
    return jax.process_index() == 0


def check_batch_split(batch_size: int, mesh: Mesh, *, num_configs: int = 1) -> None:
    """ValueError unless the batch splits evenly over the "data" axis and, with K > 1 subnets
    per step (a supernet's; the other methods ignore K, so their configs do not check it), into
    K equal shares (``glora_jax.supernet.deal_shares``) whose batch / K groups of K examples
    split over the axis too: else XLA gathers the whole batch onto every device and the step
    runs unsplit."""
    devices = mesh.shape[DATA_AXIS]
    if batch_size % devices:
        raise ValueError(f"batch size {batch_size} is not divisible by the {devices} devices")
    if batch_size % num_configs:
        raise ValueError(
            f"batch size {batch_size} is not divisible by num_configs {num_configs}: each of "
            "the subnets a step samples trains on an equal share of it"
        )
    if num_configs > 1 and batch_size // num_configs % devices:
        raise ValueError(
            f"batch size {batch_size} with {num_configs} subnets per step: its "
            f"{batch_size // num_configs} groups of {num_configs} examples do not split over "
            f"the {devices} devices (each would compute the whole batch); use a multiple of "
            f"{num_configs * devices}"
        )


@dataclasses.dataclass(frozen=True)
class JittedStep:
    """A train step jitted over the packed state (``experiments.training.packing``).

    ``step(packed, backbone, images, labels) -> (packed, metrics)`` with the state (donated) and
    backbone replicated and the batch split over "data"; ``pack`` / ``unpack`` (jitted) convert
    a ``TrainState`` to and from the packed form, for checkpoints and evaluation.
    """

    step: jax.stages.Wrapped  # (Packed, Params, images, labels) -> (Packed, Metrics)
    pack: Callable[[TrainState], Packed]
    unpack: Callable[[Packed], TrainState]


def jit_train_step(step: TrainStep, mesh: Mesh, state: TrainState) -> JittedStep:
    """``step`` jitted for states shaped like ``state`` (arrays or ``jax.ShapeDtypeStruct``)."""
    packing = Packing.of(state)
    rep, batch = replicated(mesh), batch_sharded(mesh)

    def packed_step(
        packed: Packed, backbone: Params, images: jax.Array, labels: jax.Array
    ) -> tuple[Packed, Metrics]:
        # the mesh in context tells kernels XLA cannot partition how the batch is split
        # (peft_core.one_read), and the ViT its rows per device (its token padding,
        # peft_core.activation_grads.per_device); the step's own ops are partitioned from
        # the shardings alone
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            next_state, metrics = step(packing.unpack(packed), backbone, images, labels)
        return packing.pack(next_state), metrics

    return JittedStep(
        step=jax.jit(
            packed_step,
            in_shardings=(rep, rep, batch, batch),
            out_shardings=(rep, rep),
            donate_argnums=(0,),
        ),
        pack=jax.jit(packing.pack, out_shardings=rep),
        unpack=jax.jit(packing.unpack, out_shardings=rep),
    )
