"""``train``: one function that fine-tunes any adapter (LoRA, FLoRA, GLoRA supernet, full, probe).

params -> (frozen backbone, trainable {"adapter": adapter.init(...), "head": head})
resume from <workdir>/checkpoints if there is one (refused if it does not fit)
jitted sharded step per batch -> metrics (CSV + TensorBoard in workdir) -> checkpoints
-> TrainResult (trained head in ``params``, ``aparams``, history, wall time, counts)
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import pathlib
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from experiments.data.pipeline import EvalBatch
from experiments.placement import put_global
from experiments.training.checkpoint import DATA_SETTING, Checkpointer, check_saved_run
from experiments.training.config import TrainConfig
from experiments.training.evaluate import (
    make_accuracy_fn,
    make_multi_config_count_fn,
    num_scored,
    stack_eval_batches,
)
from experiments.training.loop import BatchSource, Evaluate, LoopSettings, run_steps
from experiments.training.metrics import History, MetricWriter
from experiments.training.optim import lr_schedule, make_optimizer
from experiments.training.partition import in_dtypes_of, init_trainable, join_head, split_head
from experiments.training.sharding import (
    batch_sharded,
    check_batch_split,
    data_mesh,
    is_main_process,
    jit_train_step,
    replicated,
)
from experiments.training.state import TrainState, create_state
from experiments.training.step import Forward, make_train_step
from glora_jax.supernet import ConfigSpace
from peft_core import Adapter, param_count
from peft_core.paths import Params

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """params: the model params with the trained head (in the params' dtypes; ``state`` holds
    its f32 master copy, ``partition.master_copy``); aparams: the trained adapter tensors.

    history: {metric name: [(step, value), ...]} as written to the workdir's metrics.csv.
    wall_time_s: this call's seconds plus, for a resumed run, those its checkpoint recorded of
    the runs before (``train/wall_time_s`` at that step): the training's, summed over resumes.
    num_trainable: scalars in {"adapter", "head"} (for a supernet: all its shared tensors).
    eval_accuracy: final accuracy on eval_data (for a supernet without a fixed cfg, the mean
    over ``config.eval_configs`` random subnets), None without eval_data.
    """

    params: Params
    aparams: Any
    state: TrainState
    history: History
    wall_time_s: float
    num_trainable: int
    eval_accuracy: float | None


def train(
    config: TrainConfig,
    *,
    forward: Forward,
    params: Params,
    adapter: Adapter,
    train_data: BatchSource,
    workdir: str | pathlib.Path,
    eval_data: tuple[Any, Any] | None = None,
    cfg: Any = None,
    run: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Fine-tune ``adapter`` on ``params``; resumes from ``workdir`` when it holds a checkpoint.

    The head (``config.head_pattern``) trains as itself: an adapter that rewrites a head leaf
    is a ValueError (full fine-tuning is ``peft_core.full(exclude=config.head_pattern)``).

    forward: ``forward(params, images, *, train, rng) -> logits``.
    cfg: a fixed subnet to train. None: no config (adapters without a space), or for adapters
    with a search space, a fresh random subnet per step (``config.num_configs`` per step;
    without sampling K shares of one cfg would give the same loss, so K is then 1).
    eval_data: (images (N, ...), labels (N,)) of a small split (val200; kept on device),
    evaluated every ``config.eval_every`` steps and at the end (on resume, the restored step too
    where one was due: a kill after its checkpoint may have lost its log).
    run: JSON-ready settings the trainer cannot see that also make the run ({"method.alpha":
    16.0, ...}: an adapter's or backbone's knobs that change no shape), stored with each
    checkpoint beside ``run_settings`` and compared like them on resume.
    Multi-host runs call ``sharding.initialize_distributed`` before anything else.
    """
    started = time.perf_counter()
    mesh = data_mesh()
    total_steps = config.num_steps(train_data.steps_per_epoch)
    schedule = lr_schedule(
        config.optim, steps_per_epoch=train_data.steps_per_epoch, total_steps=total_steps
    )
    optimizer = make_optimizer(config.optim, schedule)
    space: ConfigSpace | None = None
    if cfg is None and adapter.space is not None:
        space = adapter.space(params)
    num_configs = config.num_configs if space is not None else 1
    check_batch_split(config.batch_size, mesh, num_configs=num_configs)

    init_rng, state_rng = jax.random.split(jax.random.key(config.seed))
    backbone, trainable = init_trainable(
        init_rng, params, adapter, head_pattern=config.head_pattern
    )
    backbone = put_global(backbone, replicated(mesh))
    state = jax.jit(lambda t, rng: create_state(t, optimizer, rng), out_shardings=replicated(mesh))(
        put_global(trainable, replicated(mesh)), put_global(state_rng, replicated(mesh))
    )
    del trainable  # the state holds its own copy
    step_fn = jit_train_step(
        make_train_step(
            forward=forward,
            adapter=adapter,
            optimizer=optimizer,
            schedule=schedule,
            space=space,
            num_configs=num_configs,
            cfg=cfg,
        ),
        mesh,
        state,
    )
    evaluate = None
    if eval_data is not None:
        batches = stack_eval_batches(*eval_data, batch_size=config.eval_batch_size, mesh=mesh)
        evaluate = _evaluator(forward, adapter, backbone, batches, space, cfg, config)

    is_main = is_main_process()
    settings = _run(
        config, steps_per_epoch=train_data.steps_per_epoch, data=train_data.digest, cfg=cfg, run=run
    )
    checkpointer = Checkpointer(
        pathlib.Path(workdir) / CHECKPOINT_DIR,
        every=config.checkpoint_every,
        keep=config.keep_checkpoints,
        run=settings,
    )
    try:
        wall_time_s = 0.0
        if checkpointer.latest_step() is not None:
            state = checkpointer.restore(state)
            wall_time_s = checkpointer.wall_time_s(int(state.step))
            logger.info("resuming at step %d from %s", int(state.step), checkpointer.directory)
        start, final_eval = int(state.step), None
        with MetricWriter(workdir, start_step=start, enabled=is_main) as writer:
            if evaluate is not None and _due(start, total_steps, config.eval_every):
                # the final evaluation where no step is left (else the loop's replaces it)
                final_eval = _evaluate_restored(evaluate, state, writer, step=start)
            if start < total_steps:  # else a finished run resumed: its state as restored
                packed = step_fn.pack(state)
                del state  # the packed copy alone stays on the device (each step donates it)
                state, final_eval = run_steps(
                    packed,
                    start=start,
                    step_fn=step_fn,
                    backbone=backbone,
                    train_data=train_data,
                    batch_sharding=batch_sharded(mesh),
                    checkpointer=checkpointer,
                    writer=writer,
                    settings=LoopSettings(
                        total_steps=total_steps,
                        batch_size=config.batch_size,
                        log_every=config.log_every,
                        eval_every=config.eval_every,
                    ),
                    evaluate=evaluate,
                    show_progress=is_main,
                    wall_time_s=wall_time_s,
                )
            history = writer.history
    finally:
        checkpointer.close()

    final = None if final_eval is None else final_eval["eval/accuracy"]
    head = in_dtypes_of(state.trainable["head"], split_head(params, config.head_pattern)[1])
    return TrainResult(
        params=join_head(backbone, head),
        aparams=state.trainable["adapter"],
        state=state,
        history=history,
        wall_time_s=wall_time_s + time.perf_counter() - started,
        num_trainable=param_count(state.trainable),
        eval_accuracy=final,
    )


def _due(start: int, total_steps: int, eval_every: int) -> bool:
    """Whether the loop evaluated the restored step ``start`` (0: a fresh run, none)."""
    return start > 0 and (start == total_steps or (eval_every > 0 and start % eval_every == 0))


def _evaluate_restored(
    evaluate: Evaluate, state: TrainState, writer: MetricWriter, *, step: int
) -> dict[str, float]:
    """The restored state's evaluation, logged where the run that saved it was killed before
    its log (a resumed loop starts after ``step``, so it would be missing for good). Every
    process evaluates (a collective), as only process 0 reads the logs."""
    scores = evaluate(state)
    if not _logged(writer.history, scores, step=step):
        writer.write(step, scores)
    return scores


def _logged(history: History, scalars: Mapping[str, float], *, step: int) -> bool:
    """Whether ``history`` holds every one of ``scalars``' names at ``step``."""
    return all(any(s == step for s, _ in history.get(name, [])) for name in scalars)


def check_resumes(
    config: TrainConfig,
    workdir: str | pathlib.Path,
    *,
    steps_per_epoch: int,
    data: str,
    cfg: Any = None,
    run: Mapping[str, Any] | None = None,
) -> None:
    """CheckpointMismatchError where ``train`` (same arguments; ``data``: the training split's
    ``data_digest``) would refuse to resume ``workdir``'s latest checkpoint for its run's
    settings; reads, writes nothing: a caller checks before it touches the workdir."""
    settings = _run(config, steps_per_epoch=steps_per_epoch, data=data, cfg=cfg, run=run)
    check_saved_run(pathlib.Path(workdir) / CHECKPOINT_DIR, settings)


def _run(
    config: TrainConfig, *, steps_per_epoch: int, data: str, cfg: Any, run: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``run_settings`` with the caller's ``run`` settings, stored with each checkpoint."""
    settings = run_settings(config, steps_per_epoch=steps_per_epoch, cfg=cfg, data=data)
    if clash := sorted(set(run or {}) & set(settings)):
        raise ValueError(f"train's run settings {clash} would replace the trainer's own")
    return settings | dict(run or {})


def run_settings(
    config: TrainConfig, *, steps_per_epoch: int, cfg: Any, data: str | None = None
) -> dict[str, Any]:
    """What makes a training run (stored with its checkpoints; a resume must match): the
    optimiser and schedule, batch size, steps, seed, head, subnets per step, a digest of a
    fixed ``cfg`` and the training data's (``data``, ``BatchSource.digest``). Logging,
    checkpoint and evaluation knobs may change between resumes."""
    optim = {f"optim.{k}": v for k, v in dataclasses.asdict(config.optim).items()}
    return optim | {
        "batch_size": config.batch_size,
        "total_steps": config.num_steps(steps_per_epoch),
        "steps_per_epoch": steps_per_epoch,
        "seed": config.seed,
        "head_pattern": config.head_pattern,
        "num_configs": config.num_configs,
        "cfg": None if cfg is None else cfg_digest(cfg),
        DATA_SETTING: data,
    }


def cfg_digest(cfg: Any) -> str:
    """16 hex digits naming a subnet config: a digest of its leaves' dtypes, shapes and values."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(jax.device_get(cfg)):
        array = np.asarray(leaf)
        digest.update(f"{array.dtype}{array.shape}".encode() + array.tobytes())
    return digest.hexdigest()[:16]


def _evaluator(
    forward: Forward,
    adapter: Adapter,
    backbone: Params,
    batches: EvalBatch,
    space: ConfigSpace | None,
    cfg: Any,
    config: TrainConfig,
) -> Evaluate:
    """state -> {"eval/accuracy": ...}: of ``cfg``, or the mean over fixed random subnets."""
    if space is None:
        accuracy = make_accuracy_fn(forward=forward, adapter=adapter)

        def evaluate_fixed(state: TrainState) -> dict[str, float]:
            params = join_head(backbone, state.trainable["head"])
            aparams = state.trainable["adapter"]
            return {"eval/accuracy": accuracy(params, aparams, cfg, batches)}

        return evaluate_fixed
    counts = make_multi_config_count_fn(forward=forward, adapter=adapter)
    cfgs = space.sample(jax.random.key(config.seed), (config.eval_configs,))
    total = num_scored(batches)

    def evaluate_subnets(state: TrainState) -> dict[str, float]:
        params = join_head(backbone, state.trainable["head"])
        correct = counts(params, state.trainable["adapter"], cfgs, batches)
        return {"eval/accuracy": int(np.sum(correct)) / (total * len(correct))}

    return evaluate_subnets
