"""The trainer on a tiny synthetic task: config, schedule, split, step, train(), metrics, eval.

Also home of the toy model, data and switch adapter shared by test_supernet, test_checkpoint
and test_sharding (``from test_training import ...``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import pathlib
import signal
import struct
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any, cast

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_search_log import approx, csv_points, tensorboard_points
from two_processes import outputs, two_processes

from experiments.data.pipeline import TrainBatches, data_digest
from experiments.training import (
    OptimConfig,
    TrainConfig,
    TrainResult,
    classification_loss,
    data_mesh,
    join_head,
    lr_schedule,
    make_accuracy_fn,
    make_optimizer,
    make_params_accuracy_fn,
    make_train_step,
    split_batch_size,
    split_head,
    stack_eval_batches,
    train,
)
from experiments.training import trainer as trainer_module
from experiments.training.checkpoint import Checkpointer, saved_steps
from experiments.training.metrics import (
    CSV_NAME,
    FIRST_STEP_S,
    STEPS_PER_SEC,
    TENSORBOARD_DIR,
    MetricWriter,
    latest,
    steady_rate,
)
from experiments.training.partition import check_head, init_trainable
from experiments.training.state import create_state
from glora_jax import glora
from peft_core import Adapter, adapted_paths, flatten, full, linear_probe, lora, param_count
from peft_core.progress import LOG_REDRAW_S, progress_bar

DIM, HIDDEN, CLASSES = 8, 16, 3
HIDDEN_LAYERS = ("hidden_0", "hidden_1")


class ToyMLP(nn.Module):
    """Two hidden Dense layers (the adapter targets) and a Dense "head"."""

    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        for name in HIDDEN_LAYERS:
            x = nn.relu(nn.Dense(HIDDEN, name=name)(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(CLASSES, name="head")(x)


def toy_forward(params: Any, images: jax.Array, *, train: bool, rng: jax.Array) -> jax.Array:
    """ToyMLP without dropout (rng unused)."""
    return cast(jax.Array, ToyMLP().apply({"params": params}, images, train=train))


def dropout_forward(params: Any, images: jax.Array, *, train: bool, rng: jax.Array) -> jax.Array:
    """ToyMLP with dropout 0.2 drawn from ``rng`` when training."""
    logits = ToyMLP(dropout=0.2).apply(
        {"params": params}, images, train=train, rngs={"dropout": rng}
    )
    return cast(jax.Array, logits)


@functools.cache
def _jitted_init() -> Any:
    return jax.jit(lambda key: ToyMLP().init(key, jnp.zeros((1, DIM)), train=False)["params"])


def toy_params(seed: int = 0) -> dict[str, Any]:
    return _jitted_init()(jax.random.key(seed))


def toy_task(n: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian inputs (n, DIM), labels = argmax of a fixed random linear map."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    return x, np.argmax(x @ rng.normal(size=(DIM, CLASSES)), axis=1).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class ToyBatches:
    """A BatchSource: epoch e is a numpy permutation seeded by (seed, e), drop-last."""

    images: np.ndarray
    labels: np.ndarray
    batch_size: int
    seed: int = 0

    @property
    def steps_per_epoch(self) -> int:
        return len(self.labels) // self.batch_size

    @property
    def digest(self) -> str:
        return data_digest(self.images, self.labels)

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        epoch, position = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.labels))
        index = order[position * self.batch_size : (position + 1) * self.batch_size]
        return self.images[index], self.labels[index]


def toy_batches(batch_size: int = 16, n: int = 128) -> ToyBatches:
    return ToyBatches(*toy_task(n), batch_size=batch_size)


# ---- a GLoRA-like adapter with a search space: per layer, one of two deltas or none ----------


@dataclasses.dataclass(frozen=True)
class SwitchSpace:
    """cfg {layer: int32 (*batch,)} in {0, 1, 2}: delta 0, delta 1, or no delta."""

    layers: tuple[str, ...] = HIDDEN_LAYERS
    num_options: int = 3

    def sample(self, rng: jax.Array, batch_shape: tuple[int, ...] = ()) -> dict[str, jax.Array]:
        keys = jax.random.split(rng, len(self.layers))
        return {
            name: jax.random.randint(key, batch_shape, 0, self.num_options)
            for name, key in zip(self.layers, keys, strict=True)
        }


def switch_adapter() -> Adapter:
    """kernel + deltas[cfg] per hidden layer; deltas (2, in, out) plus a zero row for option 2.

    init is deterministic (numpy, no compilation): distinct small values per entry.
    """

    def init(rng: jax.Array, params: Any) -> dict[str, Any]:
        del rng
        out = {}
        for name in HIDDEN_LAYERS:
            shape = (2, *params[name]["kernel"].shape)
            out[name] = np.linspace(-0.1, 0.1, math.prod(shape), dtype=np.float32).reshape(shape)
        return out

    def apply(params: Any, aparams: Any, cfg: Any = None) -> Any:
        out = dict(params)
        for name in HIDDEN_LAYERS:
            deltas = jnp.concatenate([aparams[name], jnp.zeros_like(aparams[name][:1])])
            out[name] = {**params[name], "kernel": params[name]["kernel"] + deltas[cfg[name]]}
        return out

    return Adapter(init, apply, apply, lambda params: SwitchSpace())


def numpy_forward(params: Any, images: np.ndarray) -> np.ndarray:
    """Independent numpy reference of ToyMLP (no dropout)."""
    x = np.asarray(images, np.float64)
    for name in HIDDEN_LAYERS:
        x = np.maximum(x @ np.asarray(params[name]["kernel"]) + np.asarray(params[name]["bias"]), 0)
    return x @ np.asarray(params["head"]["kernel"]) + np.asarray(params["head"]["bias"])


def quick_config(**overrides: Any) -> TrainConfig:
    """A short run: no warm-up, lr 5e-2, log every step."""
    optim = OptimConfig(learning_rate=5e-2, warmup_epochs=0, min_lr=0.0)
    base = TrainConfig(optim=optim, batch_size=16, total_steps=12, log_every=1, checkpoint_every=0)
    return dataclasses.replace(base, **overrides)


ADAPTERS = {
    "lora": lambda: lora(2, targets=r"hidden_\d/kernel"),
    "full": lambda: full(exclude=r"head/.*"),
    "linear_probe": linear_probe,
    "switch_supernet": switch_adapter,
    "glora_supernet": lambda: glora((2,), targets=r"hidden_\d/kernel", fuse=None),
}


# ---- config ----------------------------------------------------------------------------------


def test_config_defaults_are_the_paper_recipe() -> None:
    c = TrainConfig()
    assert (c.optim.learning_rate, c.optim.weight_decay, c.batch_size, c.epochs) == (
        1e-4,
        1e-4,
        64,
        500,
    )
    assert (c.optim.warmup_epochs, c.optim.warmup_start_lr, c.optim.min_lr) == (10, 1e-6, 1e-5)
    assert c.optim.clip_grad_norm is None


@pytest.mark.parametrize(
    ("adapter", "error"),
    [("switch_supernet", "15 is not divisible by num_configs 2"), ("lora", None)],
)
def test_subnets_per_step_must_divide_the_batch_only_where_a_supernet_samples_them(
    tmp_path: pathlib.Path, adapter: str, error: str | None
) -> None:
    """TrainConfig refused a batch num_configs does not divide, though only a supernet reads it:
    a LoRA run given num_configs=2 (which vtab only warns of) and a batch of 15 was refused."""
    config = quick_config(batch_size=15, num_configs=2, total_steps=1)
    run = functools.partial(
        train, config, forward=toy_forward, params=toy_params(), adapter=ADAPTERS[adapter](),
        train_data=toy_batches(batch_size=15), workdir=tmp_path,
    )  # fmt: skip
    if error is None:
        assert int(run().state.step) == 1
    else:
        with pytest.raises(ValueError, match=error):
            run()


def test_config_from_mapping_nested_and_unknown_keys() -> None:
    c = TrainConfig.from_mapping({"batch_size": 32, "optim": {"learning_rate": 5e-4}})
    assert c.batch_size == 32 and c.optim.learning_rate == 5e-4
    with pytest.raises(ValueError, match=r"unknown TrainConfig.optim keys \['lr'\]"):
        TrainConfig.from_mapping({"optim": {"lr": 1.0}})
    for bad in (float("inf"), float("nan"), -1e-3):
        for knob in ("learning_rate", "eps", "clip_grad_norm"):
            with pytest.raises(ValueError, match=f"{knob} must be > 0 and finite, got {bad}"):
                OptimConfig(**{knob: bad})
        with pytest.raises(ValueError, match=f"weight_decay must be >= 0 and finite, got {bad}"):
            OptimConfig(weight_decay=bad)
    with pytest.raises(ValueError, match="clip_grad_norm"):
        OptimConfig(clip_grad_norm=0.0)
    with pytest.raises(ValueError, match=r"head_pattern 'head/\(' is no regex"):
        TrainConfig(head_pattern="head/(")
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*31\), got 2147483648"):
        TrainConfig(seed=2**31)
    with pytest.raises(ValueError, match="total_steps must be >= 1 or None, got 0"):
        TrainConfig(total_steps=0)


# ---- schedule and optimiser ------------------------------------------------------------------


@pytest.mark.parametrize("warmup_epochs", [0.0, 2.0])
def test_lr_schedule_matches_timm_formula(warmup_epochs: float) -> None:
    config = OptimConfig(learning_rate=1e-3, warmup_epochs=warmup_epochs, min_lr=1e-5)
    spe, total = 5, 50
    schedule = lr_schedule(config, steps_per_epoch=spe, total_steps=total)
    for step in range(total + 1):
        t, w, epochs = step / spe, warmup_epochs, total / spe
        if t < w:
            expected = 1e-6 + t * (1e-3 - 1e-6) / w
        else:
            expected = 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * t / epochs))
        np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-5, err_msg=str(step))


@pytest.mark.parametrize("clip", [None, 0.05])
def test_make_optimizer_is_adamw_with_optional_clipping(clip: float | None) -> None:
    config = OptimConfig(learning_rate=0.1, weight_decay=0.01, clip_grad_norm=clip)
    opt = make_optimizer(config, lambda step: 0.1)
    w, g = jnp.array([1.0, -2.0]), jnp.array([0.3, 0.4])
    updates, _ = opt.update(g, opt.init(w), w)
    g_used = np.asarray(g) * (min(1.0, clip / 0.5) if clip else 1.0)
    # First AdamW step: m_hat = g, v_hat = g^2 -> update = -lr (g / (|g| + eps) + wd w).
    expected = -0.1 * (g_used / (np.abs(g_used) + 1e-8) + 0.01 * np.asarray(w))
    np.testing.assert_allclose(updates, expected, rtol=1e-5)


# ---- trainable / frozen split ----------------------------------------------------------------


def test_split_head_and_join_round_trip() -> None:
    params = toy_params()
    backbone, head = split_head(params, r"head/.*")
    assert set(flatten(head)) == {"head/kernel", "head/bias"}
    assert "head" not in backbone
    chex.assert_trees_all_equal(join_head(backbone, head), params)
    with pytest.raises(ValueError, match="matches no param path"):
        split_head(params, r"classifier/.*")
    with pytest.raises(ValueError, match="both hold"):
        join_head(params, head)


@pytest.mark.parametrize(
    ("adapter", "head_pattern", "error"),
    [
        (lora(2, targets=r"hidden_.*/kernel"), r"head/.*", None),
        (lora(2, targets=r"hidden_.*/kernel"), r"head/.*|hidden_.*/bias", None),  # bias too
        (full(exclude=r"head/.*|hidden_0/.*"), r"head/.*|hidden_0/.*", None),
        (linear_probe(), r".*", None),
        (lora(2, targets=r"hidden_.*/kernel"), r"head/kernel", r"leaves out .*'head/bias'"),
        (lora(2, targets=r"hidden_.*/kernel"), r"hidden_0/.*", r"leaves out .*'head/kernel'"),
        (lora(2, targets=r"hidden_.*/kernel"), r".*", r"rewrites \(hidden_0/kernel, hidden_1"),
        (full(exclude=r"head/.*"), r"head/.*|hidden_1/bias", r"rewrites \(hidden_1/bias\)"),
    ],
)
def test_head_pattern_must_take_the_classifier_and_nothing_adapted(
    adapter: Adapter, head_pattern: str, error: str | None
) -> None:
    params = toy_params()
    adapted = adapted_paths(adapter, params)
    if error is None:
        check_head(params, head_pattern, adapted=adapted)
    else:
        with pytest.raises(ValueError, match=error):
            check_head(params, head_pattern, adapted=adapted)


def test_a_warm_up_as_long_as_the_run_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    config = OptimConfig(learning_rate=1e-3, warmup_epochs=10.0)
    lr_schedule(config, steps_per_epoch=4, total_steps=41)
    assert not caplog.records
    lr_schedule(config, steps_per_epoch=4, total_steps=40)
    assert "lasts the whole run (40 steps)" in caplog.text and "peak 0.001" in caplog.text


@pytest.mark.parametrize(("steps_per_epoch", "total_steps"), [(0, 10), (4, 0), (-1, -1)])
def test_lr_schedule_needs_a_step_per_epoch_and_a_step(steps_per_epoch: int, total_steps: int):
    """No epoch of steps would skip the warm-up; no step would make the cosine 0 / 0."""
    with pytest.raises(ValueError, match=r"\) must be >= 1$"):
        lr_schedule(OptimConfig(), steps_per_epoch=steps_per_epoch, total_steps=total_steps)


@pytest.mark.parametrize("name", ["lora", "full", "linear_probe"])
def test_frozen_params_get_no_optimizer_state(name: str) -> None:
    params = toy_params()
    backbone, trainable = init_trainable(
        jax.random.key(0), params, ADAPTERS[name](), head_pattern=r"head/.*"
    )
    state = create_state(
        trainable, make_optimizer(OptimConfig(), lambda s: 1e-3), jax.random.key(1)
    )
    adam = state.opt_state[0]
    chex.assert_trees_all_equal_shapes(adam.mu, trainable)
    chex.assert_trees_all_equal_shapes(adam.nu, trainable)
    # Optimiser state: mu + nu of the trainable tree and two int32 step counts (adam, schedule);
    # nothing of the backbone.
    assert param_count(state.opt_state) == 2 * param_count(trainable) + 2
    expected_adapter = {
        "lora": 2 * (DIM + HIDDEN) + 2 * (HIDDEN + HIDDEN),  # a (in, 2) + b (2, out) per layer
        "full": param_count(backbone),
        "linear_probe": 0,
    }[name]
    assert param_count(trainable["adapter"]) == expected_adapter
    assert param_count(trainable["head"]) == HIDDEN * CLASSES + CLASSES


def linear_probe_adamw(config: OptimConfig, total_steps: int) -> tuple[Any, Any, Any]:
    """The jitted train step of a linear probe of ``toy_params`` under AdamW, its frozen
    backbone and its first state: (step, backbone, state)."""
    schedule = lr_schedule(config, steps_per_epoch=1, total_steps=total_steps)
    optimizer = make_optimizer(config, schedule)
    backbone, trainable = init_trainable(
        jax.random.key(0), toy_params(), linear_probe(), head_pattern=r"head/.*"
    )
    step = jax.jit(
        make_train_step(
            forward=toy_forward, adapter=linear_probe(), optimizer=optimizer, schedule=schedule
        )
    )
    return step, backbone, create_state(trainable, optimizer, jax.random.key(0))


def toy_hidden(images: Any, params: dict) -> np.ndarray:
    """The toy backbone's features by numpy: ReLU layers of ``HIDDEN_LAYERS`` in float64."""
    h = np.asarray(images, np.float64)
    for name in HIDDEN_LAYERS:
        h = np.maximum(h @ np.asarray(params[name]["kernel"]) + np.asarray(params[name]["bias"]), 0)
    return h


def test_train_step_matches_numpy_linear_probe_adamw() -> None:
    """One step: cross-entropy gradient of the head by hand, first AdamW update by hand."""
    params = toy_params()
    images, labels = toy_task(16)
    config = OptimConfig(learning_rate=0.01, weight_decay=0.1, warmup_epochs=0)
    step, backbone, state = linear_probe_adamw(config, total_steps=10)
    state, metrics = step(state, backbone, images, labels)

    h = toy_hidden(images, params)
    w, b = np.asarray(params["head"]["kernel"], np.float64), np.asarray(params["head"]["bias"])
    logits = h @ w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(16), labels]))
    dlogits = (p - np.eye(CLASSES)[labels]) / 16
    grads = {"kernel": h.T @ dlogits, "bias": dlogits.sum(0)}
    lr = 0.01  # cosine at step 0 is the peak
    expected = {
        k: v - lr * (g / (np.abs(g) + 1e-8) + 0.1 * v)
        for (k, g), v in zip(grads.items(), (w, b), strict=True)
    }
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(metrics["lr"], lr, rtol=1e-6)
    global_norm = math.sqrt(sum(float(np.sum(g**2)) for g in grads.values()))
    np.testing.assert_allclose(metrics["grad_norm"], global_norm, rtol=1e-4)
    chex.assert_trees_all_close(state.trainable["head"]["head"], expected, rtol=1e-4, atol=1e-6)
    assert int(state.step) == 1


def numpy_head_adamw_step(
    head: dict[str, np.ndarray],
    mu: dict[str, np.ndarray],
    nu: dict[str, np.ndarray],
    h: np.ndarray,
    labels: np.ndarray,
    *,
    t: int,
    lr: float,
    weight_decay: float,
) -> None:
    """Step ``t`` (1-based) of bias-corrected AdamW with decoupled decay on the linear head's
    mean softmax cross-entropy over hidden features ``h``, in float64 numpy, in place."""
    logits = h @ head["kernel"] + head["bias"]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dlogits = (p - np.eye(CLASSES)[labels]) / len(labels)
    grads = {"kernel": h.T @ dlogits, "bias": dlogits.sum(0)}
    for k, g in grads.items():
        mu[k] = 0.9 * mu[k] + 0.1 * g
        nu[k] = 0.999 * nu[k] + 0.001 * g**2
        adam = (mu[k] / (1 - 0.9**t)) / (np.sqrt(nu[k] / (1 - 0.999**t)) + 1e-8)
        head[k] = head[k] - lr * (adam + weight_decay * head[k])


def test_train_steps_carry_the_adamw_moments_like_numpy() -> None:
    """Three steps on one batch against bias-corrected AdamW by hand: each step's update uses the
    moments the steps before it left in the state (and the schedule's lr at its step)."""
    params = toy_params()
    images, labels = toy_task(16)
    config = OptimConfig(learning_rate=0.01, weight_decay=0.1, warmup_epochs=0, min_lr=0.0)
    step, backbone, state = linear_probe_adamw(config, total_steps=4)

    h = toy_hidden(images, params)
    head = {k: np.asarray(params["head"][k], np.float64) for k in ("kernel", "bias")}
    mu = {k: np.zeros_like(v) for k, v in head.items()}
    nu = {k: np.zeros_like(v) for k, v in head.items()}
    for t in range(1, 4):
        state, metrics = step(state, backbone, images, labels)
        lr = 0.5 * 0.01 * (1 + math.cos(math.pi * (t - 1) / 4))
        numpy_head_adamw_step(head, mu, nu, h, labels, t=t, lr=lr, weight_decay=0.1)
        np.testing.assert_allclose(metrics["lr"], lr, rtol=1e-6)
        chex.assert_trees_all_close(state.trainable["head"]["head"], head, rtol=1e-4, atol=1e-6)
    assert int(state.step) == 3


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_a_half_precision_head_trains_in_an_f32_master_copy(dtype: Any) -> None:
    """Params in bf16 or f16: the head trains in f32 (its params' values, AdamW's steps kept
    whole; in the params' dtype most steps of lr 1e-3 would round away), as float64 numpy's
    AdamW from the same start does, five steps on one batch."""
    params = jax.tree.map(lambda x: x.astype(dtype), toy_params())
    images, labels = toy_task(16)
    config = OptimConfig(learning_rate=1e-3, weight_decay=0.1, warmup_epochs=0, min_lr=1e-3)
    schedule = lr_schedule(config, steps_per_epoch=1, total_steps=5)
    optimizer = make_optimizer(config, schedule)
    backbone, trainable = init_trainable(
        jax.random.key(0), params, linear_probe(), head_pattern=r"head/.*"
    )
    head = {k: np.asarray(params["head"][k], np.float64) for k in ("kernel", "bias")}
    for k, v in trainable["head"]["head"].items():
        assert v.dtype == jnp.float32, k
        np.testing.assert_array_equal(np.asarray(v, np.float64), head[k])
    state = create_state(trainable, optimizer, jax.random.key(0))
    step = jax.jit(
        make_train_step(
            forward=toy_forward, adapter=linear_probe(), optimizer=optimizer, schedule=schedule
        )
    )
    h = toy_hidden(images, params)
    mu = {k: np.zeros_like(v) for k, v in head.items()}
    nu = {k: np.zeros_like(v) for k, v in head.items()}
    for t in range(1, 6):
        state, _ = step(state, backbone, images, labels)
        numpy_head_adamw_step(head, mu, nu, h, labels, t=t, lr=1e-3, weight_decay=0.1)
    trained = state.trainable["head"]["head"]
    chex.assert_trees_all_close(trained, head, rtol=1e-5, atol=2e-6)


def test_train_returns_params_in_their_dtypes_with_the_head_trained_in_f32(
    tmp_path: pathlib.Path,
) -> None:
    params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), toy_params())
    params["hidden_0"]["bias"] = params["hidden_0"]["bias"].astype(jnp.float32)
    result = train(
        quick_config(total_steps=2),
        forward=toy_forward,
        params=params,
        adapter=lora(2, targets=r"hidden_\d/kernel"),
        train_data=toy_batches(),
        workdir=tmp_path,
    )
    dtypes = {p: v.dtype for p, v in flatten(params).items()}
    assert {p: v.dtype for p, v in flatten(result.params).items()} == dtypes
    master = flatten(result.state.trainable["head"])
    assert {v.dtype for v in master.values()} == {jnp.dtype(jnp.float32)}
    for p, v in master.items():  # the served head is its master copy rounded once
        np.testing.assert_array_equal(flatten(result.params)[p], v.astype(jnp.bfloat16), p)


def test_classification_loss_matches_numpy() -> None:
    logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]])
    labels = jnp.array([0, 1])
    loss, metrics = classification_loss(logits, labels)
    z = np.asarray(logits)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    np.testing.assert_allclose(loss, -(logp[0, 0] + logp[1, 1]) / 2, rtol=1e-6)
    assert float(metrics["accuracy"]) == 0.5


# ---- train() end to end ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_train_reduces_loss_and_trains_only_trainable(name: str, tmp_path: pathlib.Path) -> None:
    params = toy_params()
    supernet = name.endswith("supernet")
    # Random subnets make the supernet's loss noisy: give it more steps to average over.
    steps = 48 if supernet else 24
    config = quick_config(total_steps=steps, num_configs=2 if supernet else 1)
    result = train(
        config,
        forward=toy_forward,
        params=params,
        adapter=ADAPTERS[name](),
        train_data=toy_batches(),
        workdir=tmp_path,
    )
    losses = [v for _, v in result.history["train/loss"]]
    assert len(losses) == steps
    window = steps // 6
    assert np.mean(losses[-window:]) < 0.8 * np.mean(losses[:window]), losses
    # The backbone comes back bit-identical; the head moved; so did the adapter (if any).
    before, after = flatten(params), flatten(result.params)
    for path in before:
        same = np.array_equal(before[path], after[path])
        assert same != path.startswith("head/"), path
    # Every adapter tensor moved, except GLoRA's D, which scales the (zero-initialised) bias.
    init = ADAPTERS[name]().init(jax.random.split(jax.random.key(config.seed))[0], params)
    trained = jax.tree_util.tree_leaves_with_path(result.aparams)
    for a, (key_path, b) in zip(jax.tree.leaves(init), trained, strict=True):
        scales_zero_bias = name == "glora_supernet" and key_path[-1].key == "d"
        assert np.array_equal(a, b) == scales_zero_bias, jax.tree_util.keystr(key_path)
    assert result.num_trainable == param_count(result.aparams) + HIDDEN * CLASSES + CLASSES
    assert result.wall_time_s > 0 and result.eval_accuracy is None


def test_latest_is_the_last_logged_value() -> None:
    """A resumed run logs its first step's time again: the result reports the latest run's."""
    history = {FIRST_STEP_S: [(1, 30.0), (5, 12.0)], "eval/accuracy": [(4, 0.5)]}
    assert latest(history, FIRST_STEP_S) == 12.0
    assert latest(history, "eval/accuracy") == 0.5
    assert latest(history, "no/such") is None


@pytest.mark.parametrize(
    "rates, expected",
    [([], None), ([0.5], 0.5), ([0.5, 10.0, 2.0, 12.0], 6.0), ([9.0, 1.0, 11.0], 9.0)],
)
def test_steady_rate_is_the_median_window(rates: list[float], expected: float | None) -> None:
    windows = [(4 * (i + 1), r) for i, r in enumerate(rates)]
    assert steady_rate({STEPS_PER_SEC: windows, FIRST_STEP_S: [(1, 30.0)]}) == expected


@dataclasses.dataclass(frozen=True)
class WrappedBatches:
    """``data``'s epoch length and digest; subclasses change what ``batch`` returns."""

    data: Any

    @property
    def steps_per_epoch(self) -> int:
        return int(self.data.steps_per_epoch)

    @property
    def digest(self) -> str:
        return str(self.data.digest)


@dataclasses.dataclass(frozen=True)
class SlowBatches(WrappedBatches):
    """``data`` whose batch ``at`` takes ``seconds`` longer to fetch."""

    at: int
    seconds: float

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        if step == self.at:
            time.sleep(self.seconds)
        return self.data.batch(step)


def test_window_rates_leave_out_the_first_step_and_evaluations(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1.5 s first step and 1.5 s evaluations would bring a window of 3-4 toy steps (a few ms
    each) under 3 steps/s; the windows leave both out."""
    make_evaluator = trainer_module._evaluator

    def slow_evaluator(*args: Any) -> Callable[[Any], dict[str, float]]:
        evaluate = make_evaluator(*args)

        def slowly(state: Any) -> dict[str, float]:
            time.sleep(1.5)
            return evaluate(state)

        return slowly

    monkeypatch.setattr(trainer_module, "_evaluator", slow_evaluator)
    result = train(
        quick_config(log_every=4, eval_every=4),
        forward=toy_forward,
        params=toy_params(),
        adapter=linear_probe(),
        train_data=SlowBatches(toy_batches(), at=0, seconds=1.5),
        workdir=tmp_path,
        eval_data=toy_task(32, seed=1),
    )
    assert [s for s, _ in result.history["eval/accuracy"]] == [4, 8, 12]
    ((_, first_s),) = result.history[FIRST_STEP_S]
    assert first_s >= 1.5
    windows = result.history[STEPS_PER_SEC]
    assert [s for s, _ in windows] == [4, 8, 12] and min(r for _, r in windows) > 3.0
    wall = [t for _, t in result.history["train/wall_time_s"]]
    assert wall == sorted(wall) and wall[-1] >= 1.5 + 2 * 1.5  # the pauses count as wall time


def test_a_resumed_runs_wall_time_counts_the_training_before_its_checkpoint(
    tmp_path: pathlib.Path,
) -> None:
    """result.json's train_seconds: a run resumed after a kill (here: a finished one, run
    again) reports the training's seconds summed over its runs, not just its own stretch."""
    run = functools.partial(
        train, quick_config(), forward=toy_forward, params=toy_params(),
        adapter=linear_probe(), workdir=tmp_path,
    )  # fmt: skip
    first = run(train_data=SlowBatches(toy_batches(), at=3, seconds=2.5))
    (step,) = saved_steps(tmp_path / trainer_module.CHECKPOINT_DIR)
    checkpoints = Checkpointer(tmp_path / trainer_module.CHECKPOINT_DIR, every=0, keep=1)
    recorded = checkpoints.wall_time_s(step)
    assert 2.5 <= recorded <= first.wall_time_s
    resumed = run(train_data=toy_batches())  # nothing left to train: only a restore
    assert resumed.wall_time_s > recorded


def test_a_progress_bar_written_to_a_log_is_drawn_at_its_start_and_end(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """stderr no terminal (a CI log keeps every redraw): a run logging each of its 12 steps
    draws its bar at the start and at the end, not at each log point."""
    train(
        quick_config(log_every=1), forward=toy_forward, params=toy_params(),
        adapter=linear_probe(), train_data=toy_batches(), workdir=tmp_path,
    )  # fmt: skip
    bar = capsys.readouterr().err
    assert bar.count("\r") <= 2 and "12/12" in bar


@pytest.mark.parametrize("terminal", [False, True])
def test_a_progress_bar_in_a_log_waits_its_interval_between_redraws(
    monkeypatch: pytest.MonkeyPatch, terminal: bool
) -> None:
    """tqdm's monitor thread redraws a bar that has not been drawn for ``maxinterval`` (10 s by
    default) whatever ``mininterval`` says: in a log, both are LOG_REDRAW_S."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    with progress_bar(total=3) as bar:
        want = (0.1, 10.0) if terminal else (LOG_REDRAW_S, LOG_REDRAW_S)
        assert (bar.mininterval, bar.maxinterval) == want


def test_train_writes_csv_and_tensorboard_and_evaluates(tmp_path: pathlib.Path) -> None:
    images, labels = toy_task(40, seed=1)
    result = train(
        quick_config(log_every=4, eval_every=6, eval_batch_size=16),
        forward=toy_forward,
        params=toy_params(),
        adapter=linear_probe(),
        train_data=toy_batches(),
        workdir=tmp_path,
        eval_data=(images, labels),
    )
    rows = (tmp_path / CSV_NAME).read_text().splitlines()
    assert rows[0] == "step,name,value"
    names = {r.split(",")[1] for r in rows[1:]}
    assert {"train/loss", "train/lr", "train/grad_norm", STEPS_PER_SEC, FIRST_STEP_S} <= names
    assert [s for s, _ in result.history["train/loss"]] == [4, 8, 12]
    ((first_step, first_s),) = result.history[FIRST_STEP_S]  # once, at the first step
    assert first_step == 1 and 0 < first_s < result.wall_time_s
    assert latest(result.history, FIRST_STEP_S) == first_s
    assert latest(result.history, "no/such") is None
    assert [s for s, _ in result.history["eval/accuracy"]] == [6, 12]
    assert list((tmp_path / TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    expected = np.mean(np.argmax(numpy_forward(result.params, images), 1) == labels)
    assert result.eval_accuracy == pytest.approx(expected)


def test_every_point_up_to_a_checkpoint_is_on_disk_when_it_is_saved(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TensorBoard's points reached the disk when tensorboardX's thread flushed, up to a second
    later: a kill after a checkpoint lost the points before it (and an evaluation's at it),
    which the resumed run keeps and does not log again. The writer never closes here, as under
    a kill."""
    unclosed: list[MetricWriter] = []
    close = MetricWriter.close
    monkeypatch.setattr(MetricWriter, "close", lambda self: unclosed.append(self))
    at_saves = []
    save = Checkpointer.save

    def saving(self: Checkpointer, state: Any, **kwargs: Any) -> None:
        at_saves.append((int(state.step), csv_points(tmp_path), tensorboard_points(tmp_path)))
        save(self, state, **kwargs)

    monkeypatch.setattr(Checkpointer, "save", saving)
    images, labels = toy_task(40, seed=1)
    config = quick_config(log_every=2, eval_every=4, checkpoint_every=4, eval_batch_size=16)
    train(
        config, forward=toy_forward, params=toy_params(), adapter=linear_probe(),
        train_data=toy_batches(), workdir=tmp_path, eval_data=(images, labels),
    )  # fmt: skip
    assert [step for step, _, _ in at_saves] == [4, 8, 12]
    for _, in_csv, in_tensorboard in at_saves:
        assert in_tensorboard == approx(in_csv)
    in_csv = csv_points(tmp_path)
    assert [s for s, _ in in_csv["eval/accuracy"]] == [4, 8, 12]
    assert tensorboard_points(tmp_path) == approx(in_csv)  # the last evaluation's too
    for writer in unclosed:
        close(writer)


def test_a_logging_window_holds_the_mean_of_its_steps_and_its_last_lr(
    tmp_path: pathlib.Path,
) -> None:
    """log_every=4 logs what log_every=1 would have, summarised: each window's mean loss and
    gradient norm, and the learning rate of its last step (the schedule moves every step)."""

    def run(every: int) -> TrainResult:
        return train(
            quick_config(log_every=every), forward=toy_forward, params=toy_params(),
            adapter=linear_probe(), train_data=toy_batches(), workdir=tmp_path / str(every),
        )  # fmt: skip

    each, windows = run(1), run(4)
    for name in ("train/loss", "train/grad_norm"):
        per_step = dict(each.history[name])
        want = [(s, np.mean([per_step[t] for t in range(s - 3, s + 1)])) for s in (4, 8, 12)]
        np.testing.assert_allclose(windows.history[name], want, rtol=1e-6)
    lr = dict(each.history["train/lr"])
    assert len(set(lr.values())) == 12  # a cosine over 12 steps: every step's lr differs
    assert windows.history["train/lr"] == [(s, lr[s]) for s in (4, 8, 12)]


def test_a_resume_drops_later_and_torn_csv_rows_and_rewrites_the_csv_whole(
    tmp_path: pathlib.Path,
) -> None:
    """A kill can tear the last appended row ("10,train/lo"): the resume skips it (it crashed on
    it) and rewrites the csv through a partial file, never truncating it in place."""
    old = "step,name,value\n4,a,1.5\n8,a,2.5\n10,train/lo"
    (tmp_path / CSV_NAME).write_text(old)
    with (tmp_path / CSV_NAME).open() as reader:  # opened before the rewrite
        with MetricWriter(tmp_path, start_step=5) as writer:
            writer.write(6, {"a": 3.5})
        assert reader.read() == old  # moved into place, not truncated and written over
    assert writer.history == {"a": [(4, 1.5), (6, 3.5)]}
    assert (tmp_path / CSV_NAME).read_text().splitlines() == ["step,name,value", "4,a,1.5",
                                                            "6,a,3.5"]  # fmt: skip
    assert not list(tmp_path.glob(".*.partial"))


def test_a_torn_last_row_that_reads_as_a_number_is_dropped_on_resume(
    tmp_path: pathlib.Path,
) -> None:
    """A kill after step 4's checkpoint, mid-append of its evaluation, can leave a row whose
    value is cut short ("0.8125" as "0."): still a number, but no row of the run. Only a row
    with its line end is whole."""
    (tmp_path / CSV_NAME).write_text("step,name,value\r\n4,a,1.5\r\n4,eval/accuracy,0.")
    with MetricWriter(tmp_path, start_step=4) as writer:
        assert writer.history == {"a": [(4, 1.5)]}


def tensorboard_events(path: pathlib.Path) -> list[Any]:
    """The Event protos of a TensorBoard events file (TFRecords: length, its crc, data, crc)."""
    from tensorboardX.proto.event_pb2 import Event

    data, events, at = path.read_bytes(), [], 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at : at + 8])
        events.append(Event.FromString(data[at + 12 : at + 12 + length]))
        at += 12 + length + 4
    return events


def test_a_resumed_writer_has_tensorboard_drop_only_the_steps_after_its_checkpoint(
    tmp_path: pathlib.Path,
) -> None:
    """A run resumed at step 8 starts its events file with a SessionLog START at step 9, from
    which TensorBoard discards the earlier files' points: those of steps 9 on, logged after the
    checkpoint and logged again now, not step 8's (the csv keeps step 8 too)."""
    from tensorboardX.proto.event_pb2 import SessionLog

    before = time.time()
    with MetricWriter(tmp_path, start_step=8) as writer:
        writer.write(9, {"a": 1.0})
    after = time.time()
    (events_file,) = (tmp_path / TENSORBOARD_DIR).glob("events.out.tfevents.*")
    events = tensorboard_events(events_file)
    # TensorBoard purges at a START only
    starts = [(e.step, e.session_log.status) for e in events if e.HasField("session_log")]
    assert starts == [(9, SessionLog.START)]
    # each event is stamped with the time it was written (TensorBoard's relative time axis)
    assert all(before <= e.wall_time <= after for e in events)
    # closed: no file of the process's stays open on the events file
    fds = pathlib.Path("/proc/self/fd")
    if fds.is_dir():
        assert events_file.resolve() not in {p.resolve() for p in fds.iterdir() if p.exists()}


def test_a_supernet_is_evaluated_as_the_mean_of_its_fixed_random_subnets(
    tmp_path: pathlib.Path,
) -> None:
    """eval_accuracy of a supernet without a fixed cfg: the mean accuracy of
    ``config.eval_configs`` subnets drawn with the run's seed, each scored by numpy."""
    images, labels = toy_task(40, seed=1)
    config = quick_config(total_steps=4, eval_configs=3, eval_batch_size=16, seed=2)
    adapter = switch_adapter()
    result = train(
        config, forward=toy_forward, params=toy_params(), adapter=adapter,
        train_data=toy_batches(), workdir=tmp_path, eval_data=(images, labels),
    )  # fmt: skip
    cfgs = SwitchSpace().sample(jax.random.key(2), (3,))
    accuracies = [
        np.mean(np.argmax(numpy_forward(adapter.apply(result.params, result.aparams, cfg), images),
                          1) == labels)
        for cfg in (jax.tree.map(lambda c, i=i: c[i], cfgs) for i in range(3))
    ]  # fmt: skip
    assert len(set(accuracies)) > 1  # the subnets differ, so the mean is not any one of them
    assert result.eval_accuracy == pytest.approx(np.mean(accuracies))


def test_train_with_the_pipeline_train_batches(tmp_path: pathlib.Path) -> None:
    """The data helper's on-device TrainBatches is a BatchSource: batch s = its batch(s)."""
    images, labels = toy_task(64)
    data = TrainBatches(images, labels, batch_size=16, seed=0, mesh=data_mesh())
    result = train(
        quick_config(total_steps=6),
        forward=toy_forward,
        params=toy_params(),
        adapter=linear_probe(),
        train_data=data,
        workdir=tmp_path,
    )
    assert int(result.state.step) == 6
    first_images, first_labels = data.batch(0)
    logits = numpy_forward(toy_params(), np.asarray(first_images))
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    first_loss = -np.mean(logp[np.arange(16), np.asarray(first_labels)])
    np.testing.assert_allclose(result.history["train/loss"][0][1], first_loss, rtol=1e-5)


@pytest.mark.parametrize(
    ("batch_size", "n", "error"),
    [
        (8, 128, r"leading batch axis of 16 \(config.batch_size\)"),
        (16, 8, "steps_per_epoch must be >= 1, got 0"),  # 8 examples hold no batch of 16
    ],
)
def test_train_rejects_wrong_batch_size(
    batch_size: int, n: int, error: str, tmp_path: pathlib.Path
) -> None:
    with pytest.raises(ValueError, match=error):
        train(
            quick_config(),
            forward=toy_forward,
            params=toy_params(),
            adapter=linear_probe(),
            train_data=toy_batches(batch_size=batch_size, n=n),
            workdir=tmp_path,
        )


# ---- evaluation ------------------------------------------------------------------------------


@pytest.mark.parametrize("n, batch_size", [(37, 8), (16, 16), (3, 4)])
def test_accuracy_matches_numpy_with_padding(n: int, batch_size: int) -> None:
    params = toy_params(seed=3)
    images, labels = toy_task(n, seed=2)
    aparams = lora(2, targets=r"hidden_0/kernel").init(jax.random.key(0), params)
    aparams = jax.tree.map(lambda x: x + 0.1, aparams)  # a non-zero delta
    adapter = lora(2, targets=r"hidden_0/kernel")
    accuracy = make_accuracy_fn(forward=toy_forward, adapter=adapter)
    got = accuracy(params, aparams, None, stack_eval_batches(images, labels, batch_size=batch_size))
    eff = {k: dict(v) for k, v in params.items()}
    eff["hidden_0"]["kernel"] = np.asarray(params["hidden_0"]["kernel"]) + np.asarray(
        aparams["hidden_0"]["a"]
    ) @ np.asarray(aparams["hidden_0"]["b"])
    expected = np.mean(np.argmax(numpy_forward(eff, images), 1) == labels)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    "num_examples, batch_size, devices",
    [(200, 512, 1), (200, 256, 1), (200, 200, 1), (200, 100, 1), (300, 256, 1), (37, 8, 1),
     (1, 64, 1), (200, 256, 8), (300, 256, 8), (200, 100, 8), (37, 7, 2), (5, 1, 4)],
)  # fmt: skip
def test_split_batch_size_is_the_smallest_that_keeps_the_fewest_batches(
    num_examples: int, batch_size: int, devices: int
) -> None:
    """Brute force: of the multiples of ``devices`` up to ``batch_size`` rounded up to one, the
    smallest that needs no more batches than the largest does."""
    sizes = range(devices, batch_size + devices, devices)
    cap = [b for b in sizes if b >= batch_size][0]
    fewest = -(-num_examples // cap)
    want = min(b for b in sizes if -(-num_examples // b) == fewest)
    got = split_batch_size(num_examples, batch_size, devices)
    assert got == want and got % devices == 0 and got <= cap


@pytest.mark.parametrize(
    "num_examples, batch_size, shape",
    [(200, 512, (1, 200)), (200, 256, (1, 200)), (300, 256, (2, 150)), (37, 8, (5, 8))],
)
def test_a_split_is_not_padded_past_its_size(
    num_examples: int, batch_size: int, shape: tuple[int, int]
) -> None:
    images, labels = toy_task(num_examples, seed=2)
    batches = stack_eval_batches(images, labels, batch_size=batch_size)
    chex.assert_shape(batches.mask, shape)
    assert int(np.sum(np.asarray(batches.mask))) == num_examples
    with pytest.raises(ValueError, match="empty split"):
        stack_eval_batches(images[:0], labels[:0], batch_size=batch_size)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        stack_eval_batches(images, labels, batch_size=0)  # was a ZeroDivisionError


def test_params_accuracy_scores_two_models_with_one_compile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The test stage scores the adapted and the merged model: one compiled scan serves both."""
    images, labels = toy_task(37, seed=2)
    models = [toy_params(seed=3), toy_params(seed=4)]
    batches = stack_eval_batches(images, labels, batch_size=8)
    accuracy = make_params_accuracy_fn(forward=toy_forward)
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG):
        got = [accuracy(p, batches) for p in models]
    compiles = [r for r in caplog.records if "Compiling jit(count)" in r.getMessage()]
    assert len(compiles) == 1
    expected = [np.mean(np.argmax(numpy_forward(p, images), 1) == labels) for p in models]
    assert got == pytest.approx(expected)
    assert got[0] != got[1]  # two different models, so the check can tell them apart


@dataclasses.dataclass(frozen=True)
class LiveBytesBatches(ToyBatches):
    """ToyBatches that record the bytes of every live device array when a batch is drawn."""

    live: list[int] = dataclasses.field(default_factory=list)

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        self.live.append(sum(x.nbytes for x in jax.live_arrays()))
        return super().batch(step)


def test_one_copy_of_the_state_lives_on_the_device_between_checkpoints(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Full fine-tuning, a checkpoint every 2 steps: at each step the device holds the backbone
    and one (packed) state, not also the initial state or the last checkpoint's unpacked one.
    Each save is waited for: an asynchronous save holds its state until written."""
    save = Checkpointer.save

    def save_and_wait(self: Checkpointer, state: Any, **kwargs: Any) -> None:
        save(self, state, **kwargs)
        self._manager.wait_until_finished()

    monkeypatch.setattr(Checkpointer, "save", save_and_wait)
    params = toy_params()
    data = LiveBytesBatches(*toy_task(), batch_size=16)
    before = sum(x.nbytes for x in jax.live_arrays())
    config = quick_config(total_steps=8, checkpoint_every=2)
    result = train(
        config,
        forward=toy_forward,
        params=params,
        adapter=full(exclude=r"head/.*"),
        train_data=data,
        workdir=tmp_path,
    )
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(result.state))
    params_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
    assert len(data.live) == 8
    # the backbone's copy of the params and the packed state: 1.33 states here; each extra
    # state (the initial one, an unpacked one) would add 1
    extra = [(n - before - params_bytes) / state_bytes for n in data.live]
    assert max(extra) < 1.5, extra


_PREEMPTED_RUN = textwrap.dedent("""
    import pathlib, sys
    import jax
    jax.distributed.initialize()
    sys.path.insert(0, sys.argv[2])
    from test_training import ToyBatches, quick_config, toy_forward, toy_params, toy_task
    from experiments.training import train
    from peft_core import linear_probe

    class Marked(ToyBatches):
        def batch(self, step):  # tells the test the loop runs
            if step == 3:
                pathlib.Path(sys.argv[1], f"running.{jax.process_index()}").touch()
            return super().batch(step)

    train(
        quick_config(total_steps=100_000, log_every=1000, checkpoint_every=0),
        forward=toy_forward, params=toy_params(), adapter=linear_probe(),
        train_data=Marked(*toy_task(128), batch_size=16), workdir=sys.argv[1],
    )
""")


@pytest.mark.slow
def test_a_sigterm_checkpoints_and_stops_every_process_of_a_distributed_run(
    tmp_path: pathlib.Path,
) -> None:
    """jax.distributed.initialize installs JAX's preemption notifier, which takes SIGTERM from
    the run's own handler: a SIGTERM (a preempted VM's notice) was ignored and training went on
    to its end. Every process now checkpoints at the step JAX's preemption sync chose, and
    stops with 128 + SIGTERM."""
    tests = str(pathlib.Path(__file__).parent)
    with two_processes(_PREEMPTED_RUN, str(tmp_path), tests) as processes:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("running.*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        processes[1].send_signal(signal.SIGTERM)  # the notice reaches one host: all stop
        outputs(processes, status=128 + signal.SIGTERM)
    (saved,) = saved_steps(tmp_path / trainer_module.CHECKPOINT_DIR)
    assert 3 < saved < 100_000


_PREEMPTED_BETWEEN_RUNS = textwrap.dedent("""
    import os, pathlib, signal, sys, time
    import jax
    jax.distributed.initialize()
    sys.path.insert(0, sys.argv[2])
    from test_training import ToyBatches, quick_config, toy_forward, toy_params, toy_task
    from experiments.training import train
    from peft_core import linear_probe

    def run(steps, folder):
        train(
            quick_config(total_steps=steps, log_every=1000, checkpoint_every=0),
            forward=toy_forward, params=toy_params(), adapter=linear_probe(),
            train_data=ToyBatches(*toy_task(128), batch_size=16),
            workdir=pathlib.Path(sys.argv[1], folder),
        )

    run(20, "train")
    if jax.process_index() == 1:
        os.kill(os.getpid(), signal.SIGTERM)  # the notice reaches one host, between the runs
    time.sleep(2)  # the processes agree on where to stop
    run(10, "retrain")
""")


@pytest.mark.slow
def test_a_sigterm_between_two_distributed_trainings_stops_the_second_at_its_first_step(
    tmp_path: pathlib.Path,
) -> None:
    """A search's retrain is a second training whose steps start again at 0. The loop asked
    JAX's preemption sync about its own step numbers, which must go on increasing over the
    whole run: a SIGTERM after the training (in the search) set the point to stop at after
    the training's last step, so a shorter retrain never reached it and ran to its end. The
    points are counted over the whole run now, and Orbax no longer asks the sync about its
    checkpoints' steps (its save at step 20 moved the point to the retrain's step 2): the
    retrain stops at its first step (or soon after, where the notice reached the other process
    late)."""
    tests = str(pathlib.Path(__file__).parent)
    with two_processes(_PREEMPTED_BETWEEN_RUNS, str(tmp_path), tests) as processes:
        outputs(processes, status=128 + signal.SIGTERM)
    assert saved_steps(tmp_path / "train" / trainer_module.CHECKPOINT_DIR) == [20]
    (stopped,) = saved_steps(tmp_path / "retrain" / trainer_module.CHECKPOINT_DIR)
    assert 1 <= stopped < 10  # at its first step, or the next where the notice came late


def test_init_trainable_refuses_an_adapter_that_rewrites_the_head() -> None:
    """``full()`` (every leaf, head included) through the Python API: the head would train
    twice, as the head and as a delta, and ``num_trainable`` would count it twice (more
    scalars than the model holds); the error names the head leaves and the fix."""
    with pytest.raises(ValueError, match=r"rewrites \(head/bias, head/kernel\).*exclude="):
        init_trainable(jax.random.key(0), toy_params(), full(), head_pattern=r"head/.*")
