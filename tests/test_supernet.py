"""GLoRA supernet training and config scoring: per-step subnets, K-config vmap, one compile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_training import (
    HIDDEN_LAYERS,
    SwitchSpace,
    numpy_forward,
    switch_adapter,
    toy_forward,
    toy_params,
    toy_task,
)

import peft_core
from experiments.training import (
    OptimConfig,
    classification_loss,
    join_head,
    lr_schedule,
    make_config_scorer,
    make_optimizer,
    make_train_step,
    stack_eval_batches,
)
from experiments.training.partition import init_trainable
from experiments.training.state import create_state
from glora_jax import glora
from glora_jax.supernet import CONFIG_AXIS, deal_shares, supernet_loss
from peft_core import Adapter


def glora_toy() -> Adapter:
    """Real GLoRA (rank 2) on the toy MLP's hidden layers."""
    return glora((2,), targets=r"hidden_\d/kernel", fuse=None)


def space_of(adapter: Adapter, params: Any) -> Any:
    assert adapter.space is not None
    return adapter.space(params)


ADAPTERS: dict[str, Callable[[], Adapter]] = {"switch": switch_adapter, "glora": glora_toy}


def glora_and_lora_toy() -> Adapter:
    """GLoRA (rank 2) on the first hidden layer, LoRA on the second: a CombinedSpace."""
    return peft_core.combine(
        glora((2,), targets=r"hidden_0/kernel", fuse=None),
        peft_core.lora(2, targets=r"hidden_1/kernel"),
    )


def recording(adapter: Adapter, log: list[dict[str, np.ndarray]]) -> Adapter:
    """``adapter`` whose apply appends every cfg it runs with (at run time) to ``log``."""

    def apply(params: Any, aparams: Any, cfg: Any = None) -> Any:
        jax.debug.callback(lambda c: log.append(jax.tree.map(np.array, c)), cfg)
        return adapter.apply(params, aparams, cfg)

    return adapter._replace(apply=apply)


@pytest.mark.parametrize(
    ("name", "num_configs"), [("switch", 1), pytest.param("glora", 2, marks=pytest.mark.slow)]
)
def test_fresh_subnet_every_step_with_one_compile(name: str, num_configs: int) -> None:
    params, traces = toy_params(), []
    log: list[dict[str, np.ndarray]] = []
    adapter = recording(ADAPTERS[name](), log)

    def counting_forward(
        params: Any, images: jax.Array, *, train: bool, rng: jax.Array
    ) -> jax.Array:
        traces.append(1)
        return toy_forward(params, images, train=train, rng=rng)

    config = OptimConfig(learning_rate=1e-2, warmup_epochs=0)
    schedule = lr_schedule(config, steps_per_epoch=1, total_steps=100)
    optimizer = make_optimizer(config, schedule)
    backbone, trainable = init_trainable(
        jax.random.key(0), params, adapter, head_pattern=r"head/.*"
    )
    step = jax.jit(
        make_train_step(
            forward=counting_forward,
            adapter=adapter,
            optimizer=optimizer,
            schedule=schedule,
            space=space_of(adapter, params),
            num_configs=num_configs,
        )
    )
    state = create_state(trainable, optimizer, jax.random.key(1))
    images, labels = toy_task(16)
    steps = 24
    for _ in range(steps):
        state, _ = step(state, backbone, images, labels)
    jax.effects_barrier()

    assert len(traces) == 1  # one trace, one compiled step for every subnet
    assert len(log) == steps * num_configs
    flat = [np.concatenate([np.ravel(c[layer]) for layer in sorted(c)]) for c in log]
    per_step = [np.concatenate(flat[i : i + num_configs]) for i in range(0, len(flat), num_configs)]
    assert len({s.tobytes() for s in per_step}) >= 5  # steps draw different subnets
    genes = np.stack(flat)  # (draws, genes): every layer's every choice varies over steps
    varying = [len(np.unique(genes[:, g])) > 1 for g in range(genes.shape[1])]
    assert all(varying), varying
    assert set(log[0]) == set(HIDDEN_LAYERS)


@pytest.mark.parametrize(
    ("options", "error"),
    [(lambda space: {"space": space, "cfg": space.sample(jax.random.key(0))},
      "give either a search space to sample from or a fixed cfg, not both"),
     (lambda space: {"num_configs": 2}, r"num_configs=2 needs a search space \(space=\.\.\.\)")],
    ids=["space_and_cfg", "configs_without_space"],
)  # fmt: skip
def test_a_train_step_samples_from_a_space_or_takes_one_cfg(options: Any, error: str) -> None:
    optimizer = make_optimizer(OptimConfig(), lambda step: 1e-3)
    with pytest.raises(ValueError, match=error):
        make_train_step(
            forward=toy_forward,
            adapter=switch_adapter(),
            optimizer=optimizer,
            schedule=lambda step: 1e-3,
            **options(SwitchSpace()),
        )


@pytest.mark.parametrize(("name", "num_configs"), [("switch", 4), ("glora", 2), ("glora", 1)])
def test_k_config_loss_is_mean_of_per_share_losses(name: str, num_configs: int) -> None:
    params = toy_params()
    adapter = ADAPTERS[name]()
    backbone, trainable = init_trainable(
        jax.random.key(0), params, adapter, head_pattern=r"head/.*"
    )
    trainable = jax.tree.map(lambda x: x + 0.05, trainable)  # every option has a non-zero effect
    images, labels = toy_task(16)

    def config_loss(t: Any, x: jax.Array, y: jax.Array, cfg: Any, rng: jax.Array) -> Any:
        eff = adapter.apply(join_head(backbone, t["head"]), t["adapter"], cfg)
        return classification_loss(toy_forward(eff, x, train=True, rng=rng), y)

    loss_fn = supernet_loss(config_loss, space_of(adapter, params), num_configs=num_configs)
    (loss, aux), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
        trainable, images, labels, jax.random.key(7)
    )
    cfgs = aux["configs"]
    chex.assert_tree_shape_prefix(cfgs, (num_configs,))

    losses, share_grads = [], []
    share_loss = jax.jit(jax.value_and_grad(config_loss, has_aux=True))
    for k in range(num_configs):
        cfg_k = jax.tree.map(lambda c, k=k: c[k], cfgs)
        (loss_k, _), grad_k = share_loss(
            trainable, images[k::num_configs], labels[k::num_configs], cfg_k, jax.random.key(0)
        )
        losses.append(loss_k)
        share_grads.append(grad_k)
    np.testing.assert_allclose(loss, np.mean(losses), rtol=1e-6)
    mean_grad = jax.tree.map(lambda *g: np.mean(np.stack(g), axis=0), *share_grads)
    chex.assert_trees_all_close(grads, mean_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("num_configs", [1, 3])
def test_one_config_runs_its_loss_without_a_vmap(num_configs: int) -> None:
    seen: list[tuple[tuple[int, ...], bool]] = []  # (image shape, under the config vmap)

    def config_loss(t: Any, x: jax.Array, y: jax.Array, cfg: Any, rng: jax.Array) -> Any:
        try:
            batched = jax.lax.axis_size(CONFIG_AXIS) > 0
        except NameError:
            batched = False
        seen.append((x.shape, batched))
        return jnp.sum(x) * t, {}

    space = space_of(ADAPTERS["glora"](), toy_params())
    images, labels = toy_task(12)
    jax.jit(supernet_loss(config_loss, space, num_configs=num_configs))(
        jnp.float32(1.0), images, labels, jax.random.key(0)
    )
    assert seen == [((12 // num_configs, *images.shape[1:]), num_configs > 1)]


def test_deal_shares_interleaves_and_checks_divisibility() -> None:
    x = np.arange(12 * 2).reshape(12, 2)
    dealt = np.asarray(deal_shares(jnp.asarray(x), 3))
    chex.assert_shape(dealt, (4, 3, 2))
    for k in range(3):
        np.testing.assert_array_equal(dealt[:, k], x[k::3])
    with pytest.raises(ValueError, match="12 examples cannot be dealt into 5 equal shares"):
        deal_shares(jnp.asarray(x), 5)


@pytest.mark.parametrize("num_configs", [1, 2, 3])
def test_subnets_draw_their_configs_and_model_keys_as_documented(num_configs: int) -> None:
    """rng -> (config key, model key); configs = space.sample(config key, (K,)); subnet k's
    model rng is key k of split(model key, K), K = 1 included (the same draws without a vmap)."""

    def config_loss(t: Any, x: jax.Array, y: jax.Array, cfg: Any, rng: jax.Array) -> Any:
        return jax.random.uniform(rng, ()), {}

    space = SwitchSpace()
    images, labels = toy_task(12)
    rng = jax.random.key(5)
    loss, aux = jax.jit(supernet_loss(config_loss, space, num_configs=num_configs))(
        jnp.float32(0.0), images, labels, rng
    )
    config_key, model_key = jax.random.split(rng)
    chex.assert_trees_all_equal(aux["configs"], space.sample(config_key, (num_configs,)))
    draws = [jax.random.uniform(k, ()) for k in jax.random.split(model_key, num_configs)]
    np.testing.assert_allclose(loss, np.mean(draws), rtol=1e-6)


@pytest.mark.parametrize("num_configs", [2, 3])
def test_metrics_are_the_mean_over_subnets(num_configs: int) -> None:
    def config_loss(t: Any, x: jax.Array, y: jax.Array, cfg: Any, rng: jax.Array) -> Any:
        return jnp.float32(0.0), {"share_sum": jnp.sum(x), "label_max": jnp.max(y)}

    images = jnp.arange(12 * 2, dtype=jnp.float32).reshape(12, 2)
    labels = jnp.arange(12)
    _, aux = supernet_loss(config_loss, SwitchSpace(), num_configs=num_configs)(
        jnp.float32(0.0), images, labels, jax.random.key(0)
    )
    x, y = np.asarray(images), np.asarray(labels)
    shares = range(num_configs)  # share k: examples k, k + K, ...
    np.testing.assert_allclose(aux["share_sum"], np.mean([x[k::num_configs].sum() for k in shares]))
    np.testing.assert_allclose(aux["label_max"], np.mean([y[k::num_configs].max() for k in shares]))


@pytest.mark.parametrize("num_configs", [0, -1])
def test_fewer_than_one_config_is_refused_up_front(num_configs: int) -> None:
    with pytest.raises(ValueError, match=f"num_configs must be >= 1, got {num_configs}"):
        supernet_loss(lambda *args: (0.0, {}), SwitchSpace(), num_configs=num_configs)


@pytest.mark.parametrize(
    ("configs_per_call", "padding_only", "error"),
    [(0, False, "configs_per_call must be >= 1, got 0"),
     (3, True, "cannot evaluate on an empty split")],
    ids=["no_configs_per_call", "padding_only"],
)  # fmt: skip
def test_config_scorer_needs_a_config_per_call_and_an_example_to_score(
    configs_per_call: int, padding_only: bool, error: str
) -> None:
    params, adapter = toy_params(), switch_adapter()
    batches = stack_eval_batches(*toy_task(8), batch_size=8)
    if padding_only:  # batches built by hand, every row masked out
        batches = batches._replace(mask=jnp.zeros_like(batches.mask))
    with pytest.raises(ValueError, match=error):
        make_config_scorer(
            forward=toy_forward,
            adapter=adapter,
            params=params,
            aparams=adapter.init(jax.random.key(0), params),
            batches=batches,
            configs_per_call=configs_per_call,
        )


@pytest.mark.parametrize("name", [*ADAPTERS, "glora_and_lora"])
def test_config_scorer_equals_numpy_loop_over_configs(name: str) -> None:
    params = toy_params(seed=4)
    adapter = glora_and_lora_toy() if name == "glora_and_lora" else ADAPTERS[name]()
    noise = np.random.default_rng(0)
    aparams = jax.tree.map(
        lambda x: x + noise.normal(scale=0.5, size=x.shape).astype(np.float32),
        adapter.init(jax.random.key(2), params),
    )
    images, labels = toy_task(37, seed=5)
    cfgs = space_of(adapter, params).sample(jax.random.key(3), (7,))
    score = make_config_scorer(
        forward=toy_forward,
        adapter=adapter,
        params=params,
        aparams=aparams,
        batches=stack_eval_batches(images, labels, batch_size=8),
        configs_per_call=3,
    )
    got = score(cfgs)
    chex.assert_shape(got, (7,))
    expected = [
        np.mean(np.argmax(numpy_forward(adapter.apply(params, aparams, cfg), images), 1) == labels)
        for cfg in (jax.tree.map(lambda c, i=i: c[i], cfgs) for i in range(7))
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got.dtype == np.float64
    assert got.tolist() == [round(g * 37) / 37 for g in got]  # exact k / 37, no float32 noise
    assert len(set(np.round(expected, 6))) > 1  # the configs really differ
    with pytest.raises(ValueError, match="leading"):
        score(SwitchSpace().sample(jax.random.key(0)))
    none = score(jax.tree.map(lambda c: c[:0], cfgs))
    assert none.shape == (0,) and none.dtype == np.float64


@pytest.mark.parametrize(
    ("index", "match"),
    [(9, r"option index 9 out of range for A"), (-1, r"option index -1 out of range for A")],
)
def test_config_scorer_refuses_options_its_vmap_would_read_as_none(index: int, match: str) -> None:
    # In the scorer's vmap a cfg is traced: an index out of range would score the subnet
    # without that tensor. The concrete cfgs are checked before they go in.
    params, adapter = toy_params(), glora_toy()
    score = make_config_scorer(
        forward=toy_forward,
        adapter=adapter,
        params=params,
        aparams=adapter.init(jax.random.key(0), params),
        batches=stack_eval_batches(*toy_task(8), batch_size=8),
    )
    cfgs = jax.tree.map(np.array, space_of(adapter, params).sample(jax.random.key(1), (2,)))
    cfgs["hidden_1"][1, 0] = index
    with pytest.raises(ValueError, match=match):
        score(cfgs)
