"""The step loop: data at the state's step, logging, checkpoints, evaluation, non-finite stop.

Losses stay on device between log points (no per-step host sync), except after the first step
of a run (or resumed run), which is waited for once to log how long it took: its compilation
plus one step (``train/first_step_s``). Each log point logs ``train/steps_per_sec``, the steps
since the previous one (the first step excluded) over the seconds they took on the device,
checkpoints and evaluations excluded, and ``train/wall_time_s``, the seconds since the run's
first step started, summed over resumes (a resume adds the time up to its checkpoint, as the
checkpoint recorded it: the time a killed run spent after its last checkpoint is not counted,
as its steps are not). At every log point and before
every checkpoint they are fetched and checked: a non-finite loss or gradient norm raises
NonFiniteLossError naming the first bad step, before any checkpoint of a state after it is
written. In a ``jax.distributed`` run a SIGTERM to any process stops every one at the step
they agree on (``experiments.training.preemption``), after checkpointing it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import jax
import numpy as np
from jax.sharding import NamedSharding

from experiments.placement import put_global
from experiments.training.checkpoint import Checkpointer
from experiments.training.metrics import FIRST_STEP_S, STEPS_PER_SEC, MetricWriter
from experiments.training.packing import Packed
from experiments.training.preemption import preempted, stop
from experiments.training.sharding import JittedStep
from experiments.training.state import TrainState
from peft_core.paths import Params
from peft_core.progress import progress_bar


class BatchSource(Protocol):
    """Training batches by position (``experiments.data.pipeline.TrainBatches``): batch
    ``step`` is a pure function of ``step`` and a seed, so resuming needs only the step."""

    @property
    def steps_per_epoch(self) -> int: ...

    @property
    def digest(self) -> str:
        """Names the examples (``experiments.data.pipeline.data_digest``): checkpoints record it
        and a resume on other data is refused."""
        ...

    def batch(self, step: int) -> tuple[Any, Any]:
        """(images (B, ...), int labels (B,)) of global batch ``step``."""
        ...


class NonFiniteLossError(FloatingPointError):
    """The training loss or gradient norm became NaN or infinite; the message names the step."""


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    total_steps: int
    batch_size: int
    log_every: int
    eval_every: int


#: state -> {metric name: value}, e.g. {"eval/accuracy": 0.81}
Evaluate = Callable[[TrainState], dict[str, float]]


def run_steps(
    packed: Packed,
    *,
    start: int,
    step_fn: JittedStep,
    backbone: Params,
    train_data: BatchSource,
    batch_sharding: NamedSharding,
    checkpointer: Checkpointer,
    writer: MetricWriter,
    settings: LoopSettings,
    evaluate: Evaluate | None = None,
    show_progress: bool = True,
    wall_time_s: float = 0.0,
) -> tuple[TrainState, dict[str, float] | None]:
    """Train the ``packed`` state (``step_fn.pack``: a few buffers instead of one per leaf),
    at step ``start``, to ``settings.total_steps``; the final state is checkpointed with the
    run's wall time (``wall_time_s``: the seconds of the steps before ``start``). Each step
    donates the packed state; it is unpacked only to be checkpointed, evaluated or returned,
    and that copy is dropped once used (the caller drops the unpacked state it packed: one
    copy of the state lives on the device between checkpoints). Returns the final state and
    its evaluation (None without ``evaluate``); needs start < total_steps."""
    if start >= settings.total_steps:
        raise ValueError(f"no step to run: start {start} >= total_steps {settings.total_steps}")
    final_eval = None
    state = None
    pending: list[tuple[int, dict[str, jax.Array]]] = []
    run_start = time.perf_counter() - wall_time_s  # as if the run had started here
    window_start, window_steps = time.perf_counter(), 0
    with progress_bar(total=settings.total_steps, initial=start, disable=not show_progress) as bar:
        for step in range(start, settings.total_steps):
            images, labels = train_data.batch(step)
            if step == start:
                _check_batch(images, labels, settings.batch_size)
            packed, metrics = step_fn.step(
                packed,
                backbone,
                put_global(images, batch_sharding),
                put_global(labels, batch_sharding),
            )
            pending.append((step, metrics))
            done = step + 1
            if step == start:
                jax.block_until_ready(metrics)
                first_done = time.perf_counter()
                writer.write(done, {FIRST_STEP_S: first_done - window_start})
                window_start = first_done
            else:
                window_steps += 1
            last = done == settings.total_steps
            stopping = not last and preempted()
            save = checkpointer.due(done) or last or stopping
            if save or done % settings.log_every == 0:
                scalars = _summarise(pending)  # waits for the window's steps
                now = time.perf_counter()
                if window_steps:
                    scalars[STEPS_PER_SEC] = window_steps / (now - window_start)
                scalars["train/wall_time_s"] = now - run_start
                writer.write(done, scalars)
                bar.set_postfix(
                    loss=f"{scalars['train/loss']:.4f}",
                    lr=f"{scalars['train/lr']:.2e}",
                    refresh=False,  # the update below redraws (at most every mininterval)
                )
                pending, window_start, window_steps = [], now, 0
            bar.update(1)
            due = last or _every(done, settings.eval_every)
            evaluate_now = evaluate if due else None
            if save or evaluate_now is not None:
                jax.block_until_ready(packed)  # the steps before the pause count as steps
                paused = time.perf_counter()
                unpacked = step_fn.unpack(packed)
                if save:
                    checkpointer.save(unpacked, wall_time_s=paused - run_start)
                if evaluate_now is not None:
                    scores = evaluate_now(unpacked)
                    writer.write(done, scores)
                    final_eval = scores if last else None
                state = unpacked if last else None
                del unpacked
                window_start += time.perf_counter() - paused
            if stopping:
                stop(f"at step {done}, checkpointed")
    assert state is not None  # the last step always saves: its unpacked state
    return state, final_eval


def _every(step: int, period: int) -> bool:
    return period > 0 and step % period == 0


def _check_batch(images: Any, labels: Any, batch_size: int) -> None:
    if np.shape(images)[:1] != (batch_size,) or np.shape(labels) != (batch_size,):
        raise ValueError(
            f"train_data.batch gave images {np.shape(images)} and labels {np.shape(labels)}; "
            f"expected a leading batch axis of {batch_size} (config.batch_size)"
        )


def _summarise(pending: list[tuple[int, dict[str, jax.Array]]]) -> dict[str, float]:
    """Window means (lr: its last value) after checking every loss is finite."""
    fetched: list[tuple[int, dict[str, Any]]] = jax.device_get(pending)
    for step, metrics in fetched:
        loss, grad_norm = float(metrics["loss"]), float(metrics["grad_norm"])
        if not math.isfinite(loss) or not math.isfinite(grad_norm):
            values = {"loss": loss, "gradient norm": grad_norm}
            bad, other = sorted(values, key=lambda name: math.isfinite(values[name]))
            raise NonFiniteLossError(
                f"training {bad} is {values[bad]} at step {step} (the update on batch {step}; "
                f"{other} {values[other]}); stopped without saving, the last checkpoint is the "
                "last good state"
            )
    names = fetched[0][1].keys()
    scalars = {f"train/{n}": float(np.mean([m[n] for _, m in fetched])) for n in names}
    scalars["train/lr"] = float(fetched[-1][1]["lr"])
    return scalars
