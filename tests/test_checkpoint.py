"""Orbax checkpoints: exact resume after a kill, refusal of foreign trees, non-finite stop."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from test_training import (
    HIDDEN_LAYERS,
    SlowBatches,
    WrappedBatches,
    dropout_forward,
    quick_config,
    switch_adapter,
    toy_batches,
    toy_forward,
    toy_params,
    toy_task,
)

from experiments.training import (
    Checkpointer,
    CheckpointMismatchError,
    CheckpointUnreadableError,
    NonFiniteLossError,
    OptimConfig,
    TrainConfig,
    TrainState,
    train,
)
from experiments.training import trainer as trainer_module
from experiments.training.checkpoint import check_saved_run, signature
from experiments.training.metrics import CSV_NAME
from experiments.training.partition import init_trainable
from experiments.training.state import create_state
from experiments.training.trainer import CHECKPOINT_DIR
from peft_core import Adapter, linear_probe, lora
from peft_core.paths import Params


class Killed(Exception):
    """Stands for the process dying."""


@dataclasses.dataclass(frozen=True)
class DyingBatches(WrappedBatches):
    """Batches of ``data`` that kill the run when batch ``die_at`` is asked for."""

    die_at: int

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        if step == self.die_at:
            raise Killed(f"killed before step {step}")
        return self.data.batch(step)


@dataclasses.dataclass(frozen=True)
class NaNBatches(WrappedBatches):
    """Batches of ``data`` with NaN images from batch ``nan_at`` on."""

    nan_at: int

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        images, labels = self.data.batch(step)
        return (np.full_like(images, np.nan) if step >= self.nan_at else images), labels


def dying_evaluator(
    make_evaluator: Callable[..., Callable[[Any], dict[str, float]]], *, at_step: int
) -> Callable[..., Callable[[Any], dict[str, float]]]:
    """``trainer._evaluator`` whose evaluations kill the run when they evaluate step ``at_step``."""

    def make(*args: Any) -> Callable[[Any], dict[str, float]]:
        evaluate = make_evaluator(*args)

        def die_at(state: Any) -> dict[str, float]:
            if int(state.step) == at_step:
                raise Killed(f"killed during the evaluation at step {at_step}")
            return evaluate(state)

        return die_at

    return make


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_final_state(tmp_path: pathlib.Path) -> None:
    """GLoRA-like supernet (K=2) with dropout: params, optimiser state, rng and data resume."""
    config = quick_config(total_steps=8, checkpoint_every=3, num_configs=2)
    run = functools.partial(
        train, config, forward=dropout_forward, params=toy_params(), adapter=switch_adapter()
    )
    straight = run(train_data=toy_batches(), workdir=tmp_path / "straight")

    workdir = tmp_path / "killed"
    with pytest.raises(Killed):  # dies after step 4, one step past the checkpoint at 3
        run(train_data=DyingBatches(toy_batches(), 4), workdir=workdir)
    assert Checkpointer(workdir / CHECKPOINT_DIR, every=3, keep=2).latest_step() == 3
    resumed = run(train_data=toy_batches(), workdir=workdir)

    chex.assert_trees_all_close(resumed.state.trainable, straight.state.trainable, atol=1e-6)
    chex.assert_trees_all_close(resumed.state.opt_state, straight.state.opt_state, atol=1e-6)
    assert int(resumed.state.step) == 8
    # The logs read as one run: each step once, the same losses.
    steps, losses = zip(*resumed.history["train/loss"], strict=True)
    assert steps == tuple(range(1, 9))
    # Each start of the loop (the killed run's, the resumed one's) logs its first step's time.
    assert [s for s, _ in resumed.history["train/first_step_s"]] == [1, 4]
    np.testing.assert_allclose(losses, [v for _, v in straight.history["train/loss"]], rtol=1e-6)


def test_resumed_wall_time_goes_on_from_the_checkpoint(tmp_path: pathlib.Path) -> None:
    """The killed run spends 2 s on batch 1, before its checkpoint at step 2: the resumed run's
    wall times start from that checkpoint's, so the logs' wall time never goes back."""
    run = functools.partial(
        train, quick_config(total_steps=6, checkpoint_every=2), forward=toy_forward,
        params=toy_params(), adapter=linear_probe(), workdir=tmp_path,
    )  # fmt: skip
    with pytest.raises(Killed):
        run(train_data=DyingBatches(SlowBatches(toy_batches(), at=1, seconds=2.0), die_at=3))
    saved = Checkpointer(tmp_path / CHECKPOINT_DIR, every=2, keep=2).wall_time_s(2)
    assert saved >= 2.0
    resumed = run(train_data=toy_batches())
    steps, wall = zip(*resumed.history["train/wall_time_s"], strict=True)
    assert steps == tuple(range(1, 7))
    assert list(wall) == sorted(wall) and wall[2] >= saved  # step 3 is the resumed run's first


@pytest.mark.parametrize("eval_every", [0, 2])
def test_final_evaluation_lost_to_a_kill_is_logged_on_resume(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, eval_every: int
) -> None:
    """Killed after the final checkpoint, during the final evaluation: the rerun has no step
    left, evaluates the restored state and logs it once; a further rerun logs nothing new.
    eval_every=2: the evaluation logged at step 2 is not the final one's."""
    make_evaluator = trainer_module._evaluator
    run = functools.partial(
        train, quick_config(total_steps=4, checkpoint_every=2, eval_every=eval_every),
        forward=toy_forward, params=toy_params(), adapter=linear_probe(),
        train_data=toy_batches(), workdir=tmp_path, eval_data=toy_task(32, seed=1),
    )  # fmt: skip
    monkeypatch.setattr(trainer_module, "_evaluator", dying_evaluator(make_evaluator, at_step=4))
    with pytest.raises(Killed):
        run()
    assert Checkpointer(tmp_path / CHECKPOINT_DIR, every=2, keep=2).latest_step() == 4
    earlier = (tmp_path / CSV_NAME).read_text().count("eval/accuracy")
    assert earlier == (1 if eval_every else 0)  # step 2's
    monkeypatch.setattr(trainer_module, "_evaluator", make_evaluator)
    resumed = run()
    assert resumed.history["eval/accuracy"][earlier:] == [(4, resumed.eval_accuracy)]
    assert [s for s, _ in resumed.history["eval/accuracy"]] == [2, 4][1 - earlier :]
    csv_rows = (tmp_path / CSV_NAME).read_text().splitlines()
    expected_row = f"4,eval/accuracy,{resumed.eval_accuracy}"
    assert [r for r in csv_rows if r.startswith("4,eval/accuracy,")] == [expected_row]
    again = run()
    assert again.history["eval/accuracy"] == resumed.history["eval/accuracy"]
    assert (tmp_path / CSV_NAME).read_text().count("eval/accuracy") == earlier + 1


def test_an_evaluation_lost_to_a_kill_after_its_checkpoint_is_logged_on_resume(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed during step 2's evaluation, after step 2's checkpoint: the resumed run, which goes
    on at step 3, evaluates the restored state first, so the logs hold every evaluation once
    with an uninterrupted run's values (before, step 2's was missing for good)."""
    run = functools.partial(
        train, quick_config(total_steps=4, checkpoint_every=2, eval_every=2),
        forward=toy_forward, params=toy_params(), adapter=linear_probe(),
        train_data=toy_batches(), eval_data=toy_task(32, seed=1),
    )  # fmt: skip
    straight = run(workdir=tmp_path / "straight")
    make_evaluator = trainer_module._evaluator
    monkeypatch.setattr(trainer_module, "_evaluator", dying_evaluator(make_evaluator, at_step=2))
    with pytest.raises(Killed):
        run(workdir=tmp_path / "killed")
    assert Checkpointer(tmp_path / "killed" / CHECKPOINT_DIR, every=2, keep=2).latest_step() == 2
    monkeypatch.setattr(trainer_module, "_evaluator", make_evaluator)
    resumed = run(workdir=tmp_path / "killed")
    assert resumed.history["eval/accuracy"] == straight.history["eval/accuracy"]
    rows = (tmp_path / "killed" / CSV_NAME).read_text().splitlines()
    assert [r.split(",")[0] for r in rows if ",eval/accuracy," in r] == ["2", "4"]


def test_checkpoint_of_another_model_or_adapter_is_refused(tmp_path: pathlib.Path) -> None:
    params = toy_params()

    def run(adapter: Adapter, model_params: Params = params) -> None:
        train(
            quick_config(total_steps=2),
            forward=toy_forward,
            params=model_params,
            adapter=adapter,
            train_data=toy_batches(),
            workdir=tmp_path,
        )

    run(lora(2, targets="hidden_0/kernel"))
    rank = r"\['adapter'\]\['hidden_0'\]\['a'\]: expected \(8, 4\), got \(8, 2\)"
    with pytest.raises(CheckpointMismatchError, match=rank):
        run(lora(4, targets="hidden_0/kernel"))
    wide_head = {**params, "head": {"kernel": jnp.zeros((16, 5)), "bias": jnp.zeros(5)}}
    head = r"\['head'\]\['head'\]\['bias'\]: expected \(5,\), got \(3,\)"
    with pytest.raises(CheckpointMismatchError, match=head):
        run(lora(2, targets="hidden_0/kernel"), wide_head)
    with pytest.raises(CheckpointMismatchError, match=r"missing: .*\['hidden_1'\]"):
        run(lora(2, targets=r"hidden_\d/kernel"))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"total_steps": 6}, "total_steps: 4 -> 6"),
        ({"batch_size": 8}, "batch_size: 16 -> 8"),
        ({"seed": 3}, "seed: 0 -> 3"),
        ({"num_configs": 2}, "num_configs: 1 -> 2"),  # a supernet's subnets per step
        ({"optim": OptimConfig(learning_rate=1e-2, warmup_epochs=0, min_lr=0.0)},
         "optim.learning_rate: 0.05 -> 0.01"),
    ],
)  # fmt: skip
def test_checkpoint_of_other_run_settings_is_refused(
    tmp_path: pathlib.Path, change: dict, named: str
) -> None:
    def run(config: TrainConfig, cfg: object = None, data: object = None) -> float | None:
        return train(
            config, forward=toy_forward, params=toy_params(), adapter=switch_adapter(),
            train_data=data or toy_batches(), workdir=tmp_path, cfg=cfg,
            eval_data=toy_task(24, seed=2),
        ).eval_accuracy  # fmt: skip

    config = quick_config(total_steps=4, checkpoint_every=2)
    first = run(config)
    # knobs of logging, checkpoints and evaluation may change; the finished run is evaluated again
    assert run(dataclasses.replace(config, log_every=3, eval_every=2, eval_batch_size=8)) == first
    with pytest.raises(CheckpointMismatchError, match=re.escape(named)):
        run(dataclasses.replace(config, **change))
    with pytest.raises(CheckpointMismatchError, match=r"cfg: None -> '[0-9a-f]{16}'"):
        run(config, cfg=jnp.asarray([1]))
    # the same shapes and settings on other examples (data rewritten under the same name): the
    # old model was restored and evaluated on the new data as if trained on it
    other = toy_batches()
    other = dataclasses.replace(other, images=other.images[::-1].copy())
    with pytest.raises(
        CheckpointMismatchError, match=r"train_data: '[0-9a-f]{20}' -> '[0-9a-f]{20}'"
    ):
        run(config, data=other)


def test_caller_run_settings_are_checkpointed_and_compared(tmp_path: pathlib.Path) -> None:
    """Knobs the trainer cannot see (a LoRA alpha changes no shape) resume only unchanged."""
    config = quick_config(total_steps=4, checkpoint_every=2)

    def run(settings: dict) -> object:
        return train(
            config, forward=toy_forward, params=toy_params(), adapter=switch_adapter(),
            train_data=toy_batches(), workdir=tmp_path, run=settings,
        )  # fmt: skip

    first = run({"method.alpha": 8.0})
    again = run({"method.alpha": 8.0})  # resumes at the end: the same final state
    chex.assert_trees_all_equal(again.state, first.state)
    with pytest.raises(CheckpointMismatchError, match=re.escape("method.alpha: 8.0 -> 16.0")):
        run({"method.alpha": 16.0})
    # a setting saved that no longer makes the run (a knob its method does not read) is no change
    older = tmp_path / "older"
    run_in = functools.partial(
        train, config, forward=toy_forward, params=toy_params(), adapter=switch_adapter(),
        train_data=toy_batches(), workdir=older,
    )  # fmt: skip
    saved = run_in(run={"method.alpha": 8.0, "method.space": "medium"})
    chex.assert_trees_all_equal(run_in(run={"method.alpha": 8.0}).state, saved.state)
    with pytest.raises(CheckpointMismatchError, match=re.escape("method.alpha: 8.0 -> 4.0")):
        run_in(run={"method.alpha": 4.0})
    with pytest.raises(ValueError, match=r"run settings \['seed'\] would replace the trainer's"):
        run({"seed": 1})


def test_checking_a_saved_run_logs_no_read_only_warnings(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The check before a resume opens the checkpoints read-only; Orbax's warnings about that
    ('Given directory is read only=...') read as if the workdir could not be written, and came
    before every resume and every refusal."""
    config = quick_config(total_steps=2, checkpoint_every=2)
    train(
        config, forward=toy_forward, params=toy_params(), adapter=switch_adapter(),
        train_data=toy_batches(), workdir=tmp_path, run={"method.alpha": 8.0},
    )  # fmt: skip
    with caplog.at_level("INFO"):
        check_saved_run(tmp_path / CHECKPOINT_DIR, {"method.alpha": 8.0})
        with pytest.raises(CheckpointMismatchError, match="method.alpha: 8.0 -> 4.0"):
            check_saved_run(tmp_path / CHECKPOINT_DIR, {"method.alpha": 4.0})
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [m for m in said if "read only" in m or "read_only" in m], said


def test_checkpoint_of_another_optimiser_state_is_refused(tmp_path: pathlib.Path) -> None:
    """The trainable tree fits, the optimiser state does not (gradient clipping adds a stage):
    refused naming the optimiser state's leaves, not restored into a foreign tree."""
    state = _toy_state(lora(2, targets="hidden_0/kernel"))
    checkpointer = Checkpointer(tmp_path, every=1, keep=1)
    checkpointer.save(state)
    checkpointer.close()
    clipped = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, weight_decay=1e-4))
    template = create_state(state.trainable, clipped, state.rng)
    checkpointer = Checkpointer(tmp_path, every=1, keep=1)
    with pytest.raises(CheckpointMismatchError, match=r"refusing to restore: .*\.opt_state"):
        checkpointer.restore(template)
    checkpointer.close()


def test_checkpoint_of_another_optimiser_state_dtype_is_refused(tmp_path: pathlib.Path) -> None:
    """AdamW keeping its first moment in bf16: the same tree as the f32 checkpoint, other dtypes,
    refused rather than cast on restore."""
    state = _toy_state(lora(2, targets="hidden_0/kernel"))
    checkpointer = Checkpointer(tmp_path, every=1, keep=1)
    checkpointer.save(state)
    checkpointer.close()
    bf16_mu = optax.adamw(lambda s: 1e-3, weight_decay=1e-4, mu_dtype=jnp.bfloat16)
    template = create_state(state.trainable, bf16_mu, state.rng)
    checkpointer = Checkpointer(tmp_path, every=1, keep=1)
    with pytest.raises(
        CheckpointMismatchError, match=r"\.opt_state.*mu.*float32 saved, bfloat16 now"
    ):
        checkpointer.restore(template)
    checkpointer.close()


def test_checkpoint_of_other_dtypes_is_refused(tmp_path: pathlib.Path) -> None:
    adapter = lora(2, targets="hidden_0/kernel")
    state = _toy_state(adapter)
    checkpointer = Checkpointer(tmp_path, every=1, keep=1)
    checkpointer.save(state)
    checkpointer.close()
    bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), state.trainable)
    checkpointer = Checkpointer(tmp_path, every=1, keep=1)
    with pytest.raises(CheckpointMismatchError, match=r"float32 saved, bfloat16 now"):
        checkpointer.restore(state._replace(trainable=bf16))
    checkpointer.close()


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: pathlib.Path) -> None:
    config = quick_config(total_steps=8, checkpoint_every=2, log_every=10)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 4 "):
        train(
            config,
            forward=toy_forward,
            params=toy_params(),
            adapter=lora(2, targets="hidden_0/kernel"),
            train_data=NaNBatches(toy_batches(), 4),
            workdir=tmp_path,
        )
    checkpointer = Checkpointer(tmp_path / CHECKPOINT_DIR, every=2, keep=2)
    assert checkpointer.latest_step() == 4  # nothing saved after the bad step
    template = _toy_state(lora(2, targets="hidden_0/kernel"))
    restored = checkpointer.restore(template)
    assert int(restored.step) == 4
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored.trainable))
    checkpointer.close()


POISON = 777.0


@jax.custom_vjp
def _nan_cotangent(logits: jax.Array, poison: jax.Array) -> jax.Array:
    """Identity whose gradient is NaN where ``poison``: a finite loss with non-finite grads."""
    return logits


def _nan_fwd(logits: jax.Array, poison: jax.Array) -> tuple[jax.Array, jax.Array]:
    return logits, poison


def _nan_bwd(poison: jax.Array, g: jax.Array) -> tuple[jax.Array, None]:
    return jnp.where(poison, jnp.nan, g), None


_nan_cotangent.defvjp(_nan_fwd, _nan_bwd)


def _poisoned_forward(params: Params, images: jax.Array, *, train: bool, rng: jax.Array):
    logits = toy_forward(params, images, train=train, rng=rng)
    return _nan_cotangent(logits, jnp.any(images == POISON))


@dataclasses.dataclass(frozen=True)
class PoisonBatches(WrappedBatches):
    """Batches of ``data`` whose batch ``at`` makes ``_poisoned_forward``'s gradient NaN."""

    at: int

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        images, labels = self.data.batch(step)
        return (np.where(np.arange(images.shape[-1]) == 0, POISON, images) if step == self.at
                else images), labels  # fmt: skip


def test_non_finite_gradients_with_a_finite_loss_stop_before_a_checkpoint(
    tmp_path: pathlib.Path,
) -> None:
    config = quick_config(total_steps=8, checkpoint_every=2, log_every=10)
    message = (  # it leads with what is not finite: the loss was finite
        r"^training gradient norm is nan at step 3 \(the update on batch 3; loss [0-9.]+\)"
    )
    with pytest.raises(NonFiniteLossError, match=message):
        train(
            config,
            forward=_poisoned_forward,
            params=toy_params(),
            adapter=lora(2, targets="hidden_0/kernel"),
            train_data=PoisonBatches(toy_batches(), 3),
            workdir=tmp_path,
        )
    checkpointer = Checkpointer(tmp_path / CHECKPOINT_DIR, every=2, keep=2)
    assert checkpointer.latest_step() == 2  # the state after the NaN update (4) is not saved
    restored = checkpointer.restore(_toy_state(lora(2, targets="hidden_0/kernel")))
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored.trainable))
    checkpointer.close()


def _toy_state(adapter: Adapter) -> TrainState:
    """A step-0 state of the shape train() builds for ``adapter`` on the toy model."""
    _, trainable = init_trainable(jax.random.key(0), toy_params(), adapter, head_pattern=r"head/.*")
    return create_state(
        trainable, optax.adamw(lambda s: 1e-3, weight_decay=1e-4), jax.random.key(5)
    )


def test_checkpointer_round_trip_and_keep_last(tmp_path: pathlib.Path) -> None:
    state = _toy_state(switch_adapter())
    state = state._replace(trainable=jax.tree.map(lambda x: x + 1.5, state.trainable))
    checkpointer = Checkpointer(tmp_path, every=5, keep=2)
    assert [checkpointer.due(s) for s in (0, 3, 5, 10)] == [True, False, True, True]
    for step in (5, 10, 15):
        checkpointer.save(state._replace(step=jnp.asarray(step, jnp.int32)))
    checkpointer.close()
    checkpointer = Checkpointer(tmp_path, every=5, keep=2)
    assert checkpointer.latest_step() == 15
    assert int(checkpointer.restore(_toy_state(switch_adapter())).step) == 15  # the latest
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["10", "15"]
    restored = checkpointer.restore(_toy_state(switch_adapter()), step=10)
    assert int(restored.step) == 10
    chex.assert_trees_all_equal(restored.trainable, state.trainable)
    chex.assert_trees_all_equal(restored.opt_state, state.opt_state)
    np.testing.assert_array_equal(jax.random.key_data(restored.rng), jax.random.key_data(state.rng))
    assert signature(restored) == signature(state)
    checkpointer.close()


@pytest.mark.parametrize(
    ("removed", "item"), [(("meta", "state"), "meta"), (("meta",), "meta"), (("state",), "state")]
)
def test_a_checkpoint_with_items_deleted_is_named_and_its_folder_can_go(
    tmp_path: pathlib.Path, removed: tuple[str, ...], item: str
) -> None:
    state = _toy_state(switch_adapter())
    checkpointer = Checkpointer(tmp_path, every=5, keep=2)
    for step in (5, 10):
        checkpointer.save(state._replace(step=jnp.asarray(step, jnp.int32)))
    checkpointer.close()
    for name in removed:
        shutil.rmtree(tmp_path / "10" / name)
    checkpointer = Checkpointer(tmp_path, every=5, keep=2)
    unreadable = (
        rf"^checkpoint {tmp_path}/10 cannot be read \(KeyError: .*Item \"{item}\" was not found"
        r".*\): delete that folder to resume from the checkpoint before it \(or from the start\)$"
    )
    with pytest.raises(CheckpointUnreadableError, match=unreadable):
        checkpointer.restore(_toy_state(switch_adapter()))
    checkpointer.close()
    shutil.rmtree(tmp_path / "10")  # as the message says
    checkpointer = Checkpointer(tmp_path, every=5, keep=2)
    assert int(checkpointer.restore(_toy_state(switch_adapter())).step) == 5
    checkpointer.close()


def _saved_toy_checkpoints(directory: pathlib.Path, shift: float = 0.0) -> TrainState:
    """Checkpoints at steps 5 and 10 of the toy state with ``shift`` added to its trainable."""
    state = _toy_state(switch_adapter())
    state = state._replace(trainable=jax.tree.map(lambda x: x + shift, state.trainable))
    checkpointer = Checkpointer(directory, every=5, keep=2)
    for step in (5, 10):
        checkpointer.save(state._replace(step=jnp.asarray(step, jnp.int32)))
    checkpointer.close()
    return state


def _restore_latest(directory: pathlib.Path) -> TrainState:
    checkpointer = Checkpointer(directory, every=5, keep=2)
    try:
        return checkpointer.restore(_toy_state(switch_adapter()))
    finally:
        checkpointer.close()


def test_a_checkpoint_whose_arrays_changed_after_the_save_is_refused(
    tmp_path: pathlib.Path,
) -> None:
    _saved_toy_checkpoints(tmp_path / "a")
    _saved_toy_checkpoints(tmp_path / "b", shift=0.25)  # same tree, other numbers
    shutil.rmtree(tmp_path / "a" / "10" / "state")
    shutil.copytree(tmp_path / "b" / "10" / "state", tmp_path / "a" / "10" / "state")
    changed = (
        rf"^checkpoint {tmp_path}/a/10 cannot be read \(its files changed after the save: the "
        r"arrays read back differ from those saved at \.trainable\['adapter'\]\['hidden_\d'\]"
        r".*\): delete that folder"
    )
    with pytest.raises(CheckpointUnreadableError, match=changed):
        _restore_latest(tmp_path / "a")
    shutil.rmtree(tmp_path / "a" / "10")  # as the message says
    assert int(_restore_latest(tmp_path / "a").step) == 5


def test_a_flipped_byte_in_any_checkpoint_data_file_is_refused(tmp_path: pathlib.Path) -> None:
    state = _saved_toy_checkpoints(tmp_path / "saved", shift=1.5)
    saved = tmp_path / "saved" / "10" / "state"
    data_files = sorted(p.relative_to(saved) for p in saved.rglob("*") if p.parent.name == "d")
    assert len(data_files) > 1
    refused = []
    for i, name in enumerate(data_files):  # array chunks, tree nodes, and nodes no longer used
        copy = tmp_path / str(i)
        shutil.copytree(tmp_path / "saved", copy)
        path = copy / "10" / "state" / name
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        try:
            restored = _restore_latest(copy)
        except CheckpointUnreadableError as err:
            assert str(err).startswith(f"checkpoint {copy}/10 cannot be read ("), err
            refused.append(name)
        else:  # the byte was in none of the arrays read: the same numbers, or refused
            chex.assert_trees_all_equal(restored.trainable, state.trainable)
            chex.assert_trees_all_equal(restored.opt_state, state.opt_state)
    assert refused, "no flipped byte was refused"
    chex.assert_trees_all_equal(_restore_latest(tmp_path / "saved").trainable, state.trainable)


@pytest.mark.parametrize("wrapped", [True, False])
def test_a_read_error_orbax_wraps_in_a_bare_exception_is_refused(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, wrapped: bool
) -> None:
    """Orbax re-raises a chunk's read error as ``Exception(...) from err`` on some paths."""
    _saved_toy_checkpoints(tmp_path)
    damaged = ValueError("FAILED_PRECONDITION: ZSTD_decompressStream() failed [tensorstore_spec=x]")
    outer = Exception("Encountered error while reading array index")
    outer.__cause__ = damaged

    def failing_restore(*args: Any, **kwargs: Any) -> Any:
        raise outer if wrapped else RuntimeError("not a read error")

    monkeypatch.setattr(ocp.CheckpointManager, "restore", failing_restore)
    if wrapped:
        message = (
            rf"^checkpoint {tmp_path}/10 cannot be read \(ValueError: FAILED_PRECONDITION: "
            r"ZSTD_decompressStream\(\) failed\): delete that folder"
        )
        with pytest.raises(CheckpointUnreadableError, match=message):
            _restore_latest(tmp_path)
    else:  # anything else is not the checkpoint's fault: raised as it is
        with pytest.raises(RuntimeError, match="^not a read error$"):
            _restore_latest(tmp_path)


@pytest.mark.parametrize("wrapped", [True, False])
@pytest.mark.parametrize("status", ["PERMISSION_DENIED", "UNAVAILABLE", "DEADLINE_EXCEEDED"])
def test_a_read_that_fails_for_now_is_not_called_a_damaged_checkpoint(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, wrapped: bool, status: str
) -> None:
    """TensorStore raises ValueError for every status: a permission or storage error (NFS,
    gcsfuse) was reported as a damaged checkpoint, to be deleted."""
    _saved_toy_checkpoints(tmp_path)
    error = ValueError(f"{status}: Error reading local file x [tensorstore_spec=x]")
    outer = Exception("Encountered error while reading array index")
    outer.__cause__ = error

    def failing_restore(*args: Any, **kwargs: Any) -> Any:
        raise outer if wrapped else error

    monkeypatch.setattr(ocp.CheckpointManager, "restore", failing_restore)
    message = (
        rf"^checkpoint {tmp_path}/10 could not be read now \(ValueError: {status}: Error reading "
        r"local file x\): check the folder's permissions and storage, then rerun$"
    )
    with pytest.raises(OSError, match=message):
        _restore_latest(tmp_path)


def test_a_checkpoint_saved_without_digests_restores(tmp_path: pathlib.Path) -> None:
    state = _saved_toy_checkpoints(tmp_path, shift=0.5)
    meta_file = tmp_path / "10" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    del meta["digest"]  # as checkpoints written before digests were stored
    meta_file.write_text(json.dumps(meta))
    restored = _restore_latest(tmp_path)
    assert int(restored.step) == 10
    chex.assert_trees_all_equal(restored.trainable, state.trainable)


def test_a_torn_data_file_is_named_in_a_short_message(tmp_path: pathlib.Path) -> None:
    _saved_toy_checkpoints(tmp_path)
    for path in (tmp_path / "10" / "state").rglob("*"):
        if path.parent.name == "d":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointUnreadableError) as caught:
        _restore_latest(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"checkpoint {tmp_path}/10 cannot be read (ValueError: ")
    assert message.endswith(
        "delete that folder to resume from the checkpoint before it (or from the start)"
    )
    assert "tensorstore_spec" not in message and len(message) < 500, message


_FAILED_RESTORES = textwrap.dedent("""
    import pathlib, sys, time
    sys.path.insert(0, sys.argv[1])
    from test_checkpoint import _restore_latest, _saved_toy_checkpoints
    for trial in range(3):
        folder = pathlib.Path(sys.argv[2], str(trial))
        _saved_toy_checkpoints(folder)
        for path in (folder / "10" / "state").rglob("*"):
            if path.parent.name == "d":
                data = bytearray(path.read_bytes())
                data[len(data) // 2] ^= 0xFF
                path.write_bytes(bytes(data))
        try:
            _restore_latest(folder)
        except ValueError as error:
            print(type(error).__name__, flush=True)
        time.sleep(1)  # the abandoned reads finish


    class Other:
        def __del__(self):
            raise KeyError("other")  # an unraisable error of another kind

    Other()
""")


def test_a_failed_restore_leaves_no_event_loop_tracebacks(tmp_path: pathlib.Path) -> None:
    """Orbax abandons a failed restore's other reads; finishing later, each called back into
    the closed event loop: 'RuntimeError: Event loop is closed' tracebacks after the error."""
    tests = str(pathlib.Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, "-c", _FAILED_RESTORES, tests, str(tmp_path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["CheckpointUnreadableError"] * 3
    assert "Event loop is closed" not in done.stderr
    assert "KeyError: 'other'" in done.stderr  # other unraisable errors are still printed


def test_run_settings_added_since_a_checkpoint_are_not_changes(tmp_path: pathlib.Path) -> None:
    state = _toy_state(lora(2, targets="hidden_0/kernel"))
    checkpointer = Checkpointer(tmp_path, every=1, keep=1, run={"batch_size": 16})
    checkpointer.save(state)
    checkpointer.close()
    newer = Checkpointer(tmp_path, every=1, keep=1, run={"batch_size": 16, "new_knob": "x"})
    assert int(newer.restore(state).step) == int(state.step)
    newer.close()
    other = Checkpointer(tmp_path, every=1, keep=1, run={"batch_size": 8, "new_knob": "x"})
    with pytest.raises(CheckpointMismatchError, match="batch_size: 16 -> 8"):
        other.restore(state)
    other.close()


def test_run_settings_of_any_json_type_resume_unchanged(tmp_path: pathlib.Path) -> None:
    """Settings compare as they read back from the checkpoint's JSON: a tuple (read back as a
    list), a nested mapping and None resume; a changed item of the tuple is refused."""
    state = _toy_state(lora(2, targets="hidden_0/kernel"))
    run = {"method.ranks": (8, 4), "backbone.extra": {"a": None, "b": [1.5]}}
    checkpointer = Checkpointer(tmp_path, every=1, keep=1, run=run)
    checkpointer.save(state)
    checkpointer.close()
    again = Checkpointer(tmp_path, every=1, keep=1, run=run)
    chex.assert_trees_all_equal(again.restore(state).trainable, state.trainable)
    again.close()
    other = Checkpointer(tmp_path, every=1, keep=1, run=run | {"method.ranks": (8, 2)})
    with pytest.raises(CheckpointMismatchError, match=re.escape("method.ranks: [8, 4] -> [8, 2]")):
        other.restore(state)
    other.close()


def test_checkpoint_of_another_fixed_subnet_is_refused(tmp_path: pathlib.Path) -> None:
    """Two fixed subnets of the switch space that differ in the last layer's choice only: the
    same trees and settings but for the subnet, so only its digest tells them apart."""

    def run(choices: tuple[int, int]) -> None:
        cfg = {
            name: jnp.asarray(c, jnp.int32) for name, c in zip(HIDDEN_LAYERS, choices, strict=True)
        }
        train(
            quick_config(total_steps=2, checkpoint_every=2), forward=toy_forward,
            params=toy_params(), adapter=switch_adapter(), train_data=toy_batches(),
            workdir=tmp_path, cfg=cfg,
        )  # fmt: skip

    run((0, 0))
    run((0, 0))  # the same subnet resumes
    with pytest.raises(CheckpointMismatchError, match=r"cfg: '[0-9a-f]{16}' -> '[0-9a-f]{16}'"):
        run((0, 1))


def test_restoring_a_step_that_was_never_saved_names_the_saved_steps(
    tmp_path: pathlib.Path,
) -> None:
    """A step with no folder is not a damaged checkpoint: the error names the saved steps (it
    said to delete the folder, which does not exist)."""
    checkpointer = Checkpointer(tmp_path, every=1, keep=2)
    checkpointer.save(_toy_state(linear_probe()))
    checkpointer.close()
    checkpointer = Checkpointer(tmp_path, every=1, keep=2)
    message = re.escape(f"no checkpoint of step 5 in {tmp_path} (saved steps: [0])")
    with pytest.raises(FileNotFoundError, match=message):
        checkpointer.restore(_toy_state(linear_probe()), step=5)
    with pytest.raises(FileNotFoundError, match=message):
        checkpointer.wall_time_s(5)
    checkpointer.close()


def test_restoring_from_a_folder_without_checkpoints_says_so(tmp_path: pathlib.Path) -> None:
    checkpointer = Checkpointer(tmp_path, every=1, keep=1)
    assert checkpointer.latest_step() is None
    with pytest.raises(FileNotFoundError, match=re.escape(f"no checkpoint in {tmp_path}")):
        checkpointer.restore(_toy_state(linear_probe()))
    checkpointer.close()
