"""Activation-space gradients (peft_core.activation_grads) against numpy and against the weight
space: the tap's VJP, LoRA's and FLoRA's whole-model gradients (plain and nn.scan ViT, a model
whose convolution stays in weight space), the train step, the FLOPs saved, and errors."""

from __future__ import annotations

import contextlib
import functools
import warnings
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flora_jax
import peft_core
from experiments.models.dense import Dense
from experiments.models.vit import vit
from experiments.training.state import create_state
from experiments.training.step import make_train_step
from peft_core import activation_grads, one_read
from peft_core.activation_grads import (
    MIN_TAP_INTENSITY,
    MIN_TAP_ROWS,
    gradient_tap,
    held,
    one_read_tap,
    per_device,
    reads_once,
    tapped,
    taps_activations,
    weight_gradient_tap,
)
from peft_core.paths import flatten, unflatten
from peft_core.targets import DENSE_TARGETS, SCANNED


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("with_offset", [False, True])
# one_read_tap's kernel (16-row blocks, rank 3 in 4 lanes: four 16-column tiles a step here)
# reads dy once where fan_out >= fan_in, x once where not, and leaves (24, 12, 10) to XLA
@pytest.mark.parametrize(
    ("tap", "m", "fan_in", "fan_out"),
    [(gradient_tap, 24, 12, 10), (weight_gradient_tap, 24, 12, 10), (one_read_tap, 24, 12, 10),
     (one_read_tap, 80, 64, 128), (one_read_tap, 80, 128, 64)],
)  # fmt: skip
def test_tap_passes_y_through_and_its_vjp_is_the_low_rank_gradient(
    tap: Any, dtype: Any, with_offset: bool, m: int, fan_in: int, fan_out: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(one_read, "TILES", one_read.Tiles(rows=16, blocks=2, cols=16))
    r = 3
    k = jax.random.split(jax.random.key(0), 6)
    x = jax.random.normal(k[0], (m, fan_in)).astype(dtype)
    u = jax.random.normal(k[1], (fan_in, r))
    v = jax.random.normal(k[2], (r, fan_out))
    dy = jax.random.normal(k[3], (m, fan_out)).astype(dtype)
    offset = jax.random.normal(k[4], (fan_in,)) if with_offset else None
    y = jax.random.normal(k[5], (m, fan_out)).astype(dtype)
    out, vjp = jax.vjp(lambda y, x, u, v: tap(y, x, u, v, offset), y, x, u, v)
    kernel = "pallas_call" in str(jax.make_jaxpr(vjp)(dy))
    assert kernel is (tap is one_read_tap and m == 80)
    chex.assert_trees_all_equal(out, y)
    dy_y, dx, du, dv = vjp(dy)
    chex.assert_trees_all_equal(dy_y, dy)
    # numpy: y = x' (W + u v), x' = x + offset, gives dL/du = x'ᵀ dy vᵀ and dL/dv = uᵀ x'ᵀ dy
    xn, dyn = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    if with_offset:
        xn = xn + np.asarray(offset, np.float64)
    un, vn = np.asarray(u, np.float64), np.asarray(v, np.float64)
    tol = 1e-6 if dtype == jnp.float32 else 1e-2  # bf16: x, dy and the (M, r) products rounded
    assert du.dtype == u.dtype and dv.dtype == v.dtype
    for got, want in ((du, xn.T @ dyn @ vn.T), (dv, un.T @ xn.T @ dyn)):
        assert np.linalg.norm(np.asarray(got) - want) / np.linalg.norm(want) < tol
    assert not np.any(np.asarray(dx, np.float32))  # the input gradient comes from the layer


def _random(tree: Any, seed: int, scale: float = 0.1) -> Any:
    keys = iter(jax.random.split(jax.random.key(seed), len(jax.tree.leaves(tree))))
    return jax.tree.map(lambda x: scale * jax.random.normal(next(keys), x.shape, x.dtype), tree)


class ConvThenDense(nn.Module):
    """A 3x3 convolution (stays in weight space) and a dense layer (tapped), then a head."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.gelu(nn.Conv(6, (3, 3), name="conv")(x))
        x = nn.gelu(nn.Dense(7, name="dense")(x))
        return nn.Dense(5, name="head")(jnp.mean(x, axis=(1, 2)))


MODELS = {
    # name: (model, image size, targets, stacked)
    "vit": (lambda: vit("Ti", patch=8, depth=1, num_classes=5), 16, DENSE_TARGETS, None),
    "vit_scanned": (
        lambda: vit("Ti", patch=8, depth=2, num_classes=5, scan=True), 16, DENSE_TARGETS, SCANNED
    ),
    "conv_then_dense": (lambda: ConvThenDense(), 8, (r"conv/kernel", r"dense/kernel"), None),
    # 3 x 17 tokens: one 32-row program of the one-read kernel (below) and 19 rows by XLA in
    # the first block (the last one's MLP runs on the class tokens alone)
    "vit_p4": (lambda: vit("Ti", patch=4, depth=2, num_classes=5), 16, DENSE_TARGETS, None),
    "vit_scanned_p4": (
        lambda: vit("Ti", patch=4, depth=2, num_classes=5, scan=True), 16, DENSE_TARGETS, SCANNED
    ),
}  # fmt: skip


ADAPTERS = {
    # name: (adapter factory of grads and target options, scale of the random adapter params)
    "lora": (lambda grads, **kw: peft_core.lora(2, alpha=3.0, grads=grads, **kw), 0.1),
    "flora_nd": (lambda grads, **kw: flora_jax.flora(2, scale=0.5, grads=grads, **kw), 0.5),
    "flora_matrix": (
        lambda grads, **kw: flora_jax.flora(2, scale=0.5, tucker="matrix", grads=grads, **kw), 0.5
    ),
}  # fmt: skip

#: FLoRA "nd": q/k/v (D, H, Dh) factor through the input mode's rank, out (H, Dh, D) through
#: the output's; "matrix" on the conv model: its conv keeps all modes, in weight space.
#: "pallas": "auto" with every layer and call tapped here (thresholds 0), each tap's products
#: of the wider of x and dy from the one-read kernel in 16-row blocks: rank 2 packs eight
#: 16-column tiles a step, so it serves fc1's 768-wide dy and fc2's 768-wide x, not the 192s.
#: "auto" here runs on a device of ONE_READ_MIN_ROWS (the test adds this machine's), so its taps
#: read once as "pallas"'s do.
CASES = [(m, "lora", "activation") for m in sorted(MODELS) if not m.endswith("_p4")] + [
    ("vit", "flora_nd", "activation"), ("vit_scanned", "flora_nd", "activation"),
    ("conv_then_dense", "flora_matrix", "activation"),
    ("vit_p4", "lora", "pallas"), ("vit_p4", "flora_nd", "pallas"),
    ("vit_scanned_p4", "lora", "pallas"),  # the kernel inside nn.scan (the experiments' default)
    ("vit_p4", "lora", "auto"), ("vit_p4", "flora_nd", "auto"),
]  # fmt: skip


@pytest.mark.parametrize(("model_name", "adapter_name", "grads"), CASES)
def test_activation_grads_equal_weight_space_grads(
    model_name: str, adapter_name: str, grads: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import peft_core.activation_grads as ag

    for name, value in (("MIN_TAP_ROWS", 0), ("MIN_TAP_INTENSITY", 0)):
        monkeypatch.setattr(ag, name, value)
    monkeypatch.setattr(ag, "ONE_READ_MIN_ROWS", {jax.devices()[0].device_kind: 0})
    monkeypatch.setattr(one_read, "TILES", one_read.Tiles(rows=16, blocks=2, cols=16))
    make, size, targets, stacked = MODELS[model_name]
    make_adapter, scale = ADAPTERS[adapter_name]
    model = make()
    images = jax.random.normal(jax.random.key(0), (3, size, size, 3))
    params = model.init(jax.random.key(1), images)["params"]
    # a zero head hides the rest; zero biases would hide the ViT's value bias, which reaches the
    # out projection (and its tap) as an input offset
    params = {**params, "head": _random(params["head"], 7, 1.0)}
    params = unflatten({k: _random(v, 8, 0.5) if k.endswith("/bias") else v
                        for k, v in flatten(params).items()})  # fmt: skip

    def forward(p: Any, x: jax.Array, **_: Any) -> jax.Array:
        return model.apply({"params": p}, x)

    adapters = {g: make_adapter(g, targets=targets, stacked=stacked)
                for g in ("weight", grads)}  # fmt: skip
    assert adapters["weight"].train is None and adapters[grads].train is not None
    aparams = _random(adapters["weight"].init(jax.random.key(2), params), 3, scale)

    def loss(ap: Any, head: Any, apply: Any, fwd: Any) -> jax.Array:
        logits = fwd(apply({**params, "head": head}, ap), images)
        return jnp.sum(jnp.sin(logits))

    view = adapters[grads].train
    assert view is not None
    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=(2, 3))
    args = (aparams, params["head"])
    traced = jax.make_jaxpr(jax.grad(loss), static_argnums=(2, 3))
    jaxpr = str(traced(*args, view.apply, view.wrap_forward(forward)))
    assert ("pallas_call" in jaxpr) is (grads in ("pallas", "auto"))
    if grads == "auto":  # where "auto" reads once, it runs "pallas"'s program
        pallas = make_adapter("pallas", targets=targets, stacked=stacked).train
        assert pallas is not None
        assert jaxpr == str(traced(*args, pallas.apply, pallas.wrap_forward(forward)))
    got_loss, got = grad(*args, view.apply, view.wrap_forward(forward))
    want_loss, want = grad(*args, adapters["weight"].apply, forward)
    # the held kernels are W0 + U V: weight space's kernels to float32 rounding (relative to the
    # update), which this random model amplifies (float64: below)
    held_kernels, weight_kernels = (
        flatten(a(params, aparams)) for a in (view.apply, adapters["weight"].apply)
    )
    for path, w in weight_kernels.items():
        update = float(jnp.max(jnp.abs(w - flatten(params)[path])))
        assert float(jnp.max(jnp.abs(held_kernels[path] - w))) <= 1e-6 * update, path
    # the loss, a sum of sines that cancels to ~1e-3 here, to float32 rounding of its terms
    terms = jnp.sum(jnp.abs(jnp.sin(forward(adapters["weight"].apply(params, aparams), images))))
    chex.assert_trees_all_close(got_loss, want_loss, rtol=1e-4, atol=1e-5 * float(terms))
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):  # per leaf: at
        # most 3e-5 of its largest here, where a wrong tap is off by its whole size
        assert float(jnp.max(jnp.abs(g - w))) <= 1e-4 * float(jnp.max(jnp.abs(w)))
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(got[0]))
    tapped_layers = view.apply(params, aparams)
    n_taps = sum(k.endswith("/lowrank_u") for k in flatten(tapped_layers))
    n_dense = sum(len(layer.in_shape) <= 2 for layer in peft_core.find_layers(
        params, targets, stacked=stacked))  # fmt: skip
    assert n_taps == n_dense > 0


class Tokens(nn.Module):
    """Two dense layers on (B, T, D) tokens (tapped), mean-pooled into a head (not adapted)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.gelu(nn.Dense(24, name="dense_0")(x))
        x = nn.gelu(nn.Dense(16, name="dense_1")(x))
        return nn.Dense(4, name="head")(jnp.mean(x, axis=1))


TOKEN_TARGETS = r"dense_\d/kernel"


def test_train_step_with_activation_grads_matches_weight_space() -> None:
    model = Tokens()
    x = jax.random.normal(jax.random.key(0), (4, 6, 12))
    labels = jnp.array([0, 1, 2, 3])
    params = model.init(jax.random.key(1), x)["params"]
    backbone = {k: v for k, v in params.items() if k != "head"}

    def forward(p: Any, inputs: jax.Array, *, train: bool, rng: jax.Array) -> jax.Array:
        return model.apply({"params": p}, inputs)

    optimizer = optax.adam(1e-2)
    states = {}
    for grads in ("weight", "activation"):
        adapter = peft_core.lora(2, targets=TOKEN_TARGETS, grads=grads)
        aparams = _random(adapter.init(jax.random.key(2), params), 3)
        trainable = {"adapter": aparams, "head": {"head": _random(params["head"], 4, 1.0)}}
        step = jax.jit(make_train_step(
            forward=forward, adapter=adapter, optimizer=optimizer, schedule=lambda s: 1e-2
        ))  # fmt: skip
        state = create_state(trainable, optimizer, jax.random.key(5))
        for _ in range(2):
            state, metrics = step(state, backbone, x, labels)
        states[grads] = (state.trainable, metrics)
    chex.assert_trees_all_close(states["activation"], states["weight"], rtol=1e-4, atol=1e-5)


def test_activation_grads_do_fewer_flops() -> None:
    # Weight space forms 2 M fan_in fan_out FLOPs of dL/dW per adapted kernel (M = B T tokens);
    # activation space about 8 M r (fan_in + fan_out) instead.
    model = Tokens()
    x = jnp.zeros((8, 32, 64))
    params = model.init(jax.random.key(1), x)["params"]

    def flops(grads: str) -> float:
        adapter = peft_core.lora(2, targets=TOKEN_TARGETS, grads=grads)
        apply, fwd = adapter.apply, lambda p, inputs: model.apply({"params": p}, inputs)
        if adapter.train is not None:
            apply, fwd = adapter.train.apply, adapter.train.wrap_forward(fwd)
        aparams = adapter.init(jax.random.key(2), params)
        grad = jax.grad(lambda ap: jnp.sum(fwd(apply(params, ap), x)))
        # counted for the CPU: a GPU's count depends on the kernels its autotuner picks
        aparams = jax.device_put(aparams, jax.local_devices(backend="cpu")[0])
        cost = jax.jit(grad).lower(aparams).compile().cost_analysis()
        return float((cost[0] if isinstance(cost, list) else cost)["flops"])

    m = 8 * 32
    dw = 2 * m * (64 * 24 + 24 * 16)
    saved = flops("weight") - flops("activation")
    assert 0.5 * dw < saved <= dw, (saved, dw)


@pytest.mark.parametrize("make", [peft_core.lora, flora_jax.flora])
def test_unknown_grads_raise(make: Any) -> None:
    with pytest.raises(ValueError, match="grads must be one of"):
        make(2, grads="fused")


@pytest.mark.parametrize("grads", ["weight", "fused"])
def test_tapped_refuses_grads_that_tap_no_layer(grads: str) -> None:
    error = f"tapped takes grads 'auto', 'activation' or 'pallas', got '{grads}'"
    with pytest.raises(ValueError, match=error):
        tapped(lambda p, inputs: inputs, grads)


def _train_view_and_weight_space_grads(
    model: nn.Module, adapter: Any, params: Any, x: jax.Array, reduce: Any
) -> tuple[Any, Any]:
    """Gradients of reduce(model output) with respect to random adapter params, through the
    adapter's train view and through its weight-space ``apply``."""
    view = adapter.train
    assert view is not None
    aparams = _random(adapter.init(jax.random.key(2), params), 3)
    run = view.wrap_forward(lambda p, inputs: model.apply({"params": p}, inputs))
    got = jax.grad(lambda ap: reduce(run(view.apply(params, ap), x)))(aparams)
    want = jax.grad(lambda ap: reduce(model.apply({"params": adapter.apply(params, ap)}, x)))
    return got, want(aparams)


class OneDConv(nn.Module):
    """A 1-D convolution: its kernel (3, channels, features) has two input axes, like a
    DenseGeneral's."""

    features: int = 5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Conv(self.features, (3,), name="conv")(x)


class PreNormed(nn.Module):
    """A compact module holding a kernel it applies to a LayerNorm of its input, not to x."""

    features: int = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
        return nn.LayerNorm(name="norm")(x) @ kernel


class Transposed(nn.Module):
    """nn.Einsum with its kernel stored (out, in)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Einsum((4, x.shape[-1]), "...i,oi->...o", use_bias=False, name="ein")(x)


class ByMethod(nn.Module):
    """A kernel used through a method other than ``__call__``."""

    def setup(self) -> None:
        self.kernel = self.param("kernel", nn.initializers.lecun_normal(), (4, 4))

    def project(self, x: jax.Array) -> jax.Array:
        return x @ self.kernel

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.project(x)


class Outer(nn.Module):
    """``inner`` under the name "m", called as ``inner(x)`` or, for ByMethod, ``.project(x)``."""

    inner: Any

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        module = self.inner(name="m")
        return module.project(x) if isinstance(module, ByMethod) else module(x)


@pytest.mark.parametrize(
    ("model", "target", "error"),
    [
        (OneDConv(), "conv/kernel", "conv is a Conv, not flax's Dense"),
        (Outer(PreNormed), "m/kernel", "m is a PreNormed"),
        (Outer(Transposed), "m/ein/kernel", "m/ein is a Einsum"),
        (Outer(ByMethod), "m/kernel", r"never called .*\['m'\]"),
    ],
)
def test_tap_refuses_a_layer_it_cannot_serve(model: nn.Module, target: str, error: str) -> None:
    # its VJP assumes y = x · kernel (+ bias) from the __call__ of the module holding the kernel:
    # anything else would get wrong or no gradients, so it must raise, not train
    x = jnp.ones((2, 7, 4))
    params = model.init(jax.random.key(0), x)["params"]
    adapter = peft_core.lora(2, targets=target, grads="activation")
    assert adapter.train is not None
    eff = adapter.train.apply(params, adapter.init(jax.random.key(1), params))
    run = tapped(lambda p, inputs: model.apply({"params": p}, inputs))
    with pytest.raises(ValueError, match=error):
        run(eff, x)


@pytest.mark.parametrize(
    "target, grads, warned",
    [(r"dense/kernel", "pallas", "grads='pallas' holds no adapted layer"),
     (r"dense/kernel", "activation", None), (r"dense/kernel", "auto", None),
     (r"conv/kernel", "activation", "grads='activation' holds no adapted layer"),
     (r"conv/kernel", "auto", None)],
)  # fmt: skip
def test_a_grads_form_that_holds_no_layer_is_warned_about(target, grads, warned):
    """grads='pallas' on a model whose layers are all narrower than the tap's threshold (the
    default DINOv2 ViT-S/14) trained in weight space without a word."""
    params = ConvThenDense().init(jax.random.key(0), jnp.ones((1, 8, 8, 3)))["params"]
    adapter = peft_core.lora(2, targets=target, grads=grads)
    assert adapter.train is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adapter.train.apply(params, adapter.init(jax.random.key(1), params))
    messages = [str(w.message) for w in caught]
    assert len(messages) == (warned is not None)
    assert warned is None or warned in messages[0]


class General(nn.Module):
    """nn.DenseGeneral contracting ``axis`` of a (2, 7, 4) input into 4 features."""

    axis: Any

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.DenseGeneral(4, axis=self.axis, name="dg")(x)


def test_dense_general_is_tapped_over_trailing_axes_only() -> None:
    x = jax.random.normal(jax.random.key(0), (2, 7, 4))
    for axis in (-1, [-1], (2,)):
        model = General(axis)
        params = model.init(jax.random.key(1), x)["params"]
        adapter = peft_core.lora(2, targets=r"dg/kernel", grads="activation")
        got, want = _train_view_and_weight_space_grads(
            model, adapter, params, x, lambda y: jnp.sum(jnp.sin(y))
        )
        chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5)
    model = General(1)  # contracts the 7-long middle axis: x cannot be read as rows of x · W
    params = model.init(jax.random.key(1), x)["params"]
    adapter = peft_core.lora(2, targets=r"dg/kernel", grads="activation")
    assert adapter.train is not None
    eff = adapter.train.apply(params, adapter.init(jax.random.key(1), params))
    run = tapped(lambda p, inputs: model.apply({"params": p}, inputs))
    with pytest.raises(ValueError, match="dense layer over trailing axes: dg contracts axis 1"):
        run(eff, x)


class Heads(nn.Module):
    """A bias-less q-like projection: (2, 7, 4) -> (2, 7, 2 heads, 3), kernel (4, 2, 3)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.DenseGeneral((2, 3), use_bias=False, name="q")(x)


@pytest.mark.parametrize("make", [peft_core.lora, flora_jax.flora])
def test_a_biasless_dense_general_is_tapped_with_out_axes(make: Any) -> None:
    x = jax.random.normal(jax.random.key(0), (2, 7, 4))
    model = Heads()
    params = model.init(jax.random.key(1), x)["params"]
    adapter = make(2, targets=r"q/kernel", grads="activation", out_axes={r"q/kernel": 2})
    got, want = _train_view_and_weight_space_grads(
        model, adapter, params, x, lambda y: jnp.sum(jnp.sin(y))
    )
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5)
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(got))
    # without out_axes the kernel reads as (4·2, 3), which x · kernel over x's last axis is not
    adapter = make(2, targets=r"q/kernel", grads="activation")
    assert adapter.train is not None
    eff = adapter.train.apply(params, adapter.init(jax.random.key(1), params))
    with pytest.raises(ValueError, match=r"q maps \(2, 7, 4\) .* needs the adapter's out_axes"):
        tapped(lambda p, inputs: model.apply({"params": p}, inputs))(eff, x)


@pytest.mark.parametrize("make", [peft_core.lora, flora_jax.flora])
def test_a_kernel_at_the_root_of_the_tree_is_tapped(make: Any) -> None:
    """A bare nn.Dense's params {kernel, bias}: U and V go to the root beside them."""
    x = jax.random.normal(jax.random.key(0), (2, 7, 4))
    model = nn.Dense(6)
    params = model.init(jax.random.key(1), x)["params"]
    adapter = make(2, targets="kernel", grads="activation")
    got, want = _train_view_and_weight_space_grads(
        model, adapter, params, x, lambda y: jnp.sum(jnp.sin(y))
    )
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5)
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(got))


@pytest.mark.parametrize("make", [peft_core.lora, flora_jax.flora])
def test_biasless_flax_attention_is_read_and_tapped_without_out_axes(make: Any) -> None:
    """nn.MultiHeadDotProductAttention(use_bias=False): q/k/v (4, 2, 3) read as (4, 6)."""
    x = jax.random.normal(jax.random.key(0), (2, 7, 4))
    model = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=6, use_bias=False)
    params = model.init(jax.random.key(1), x)["params"]
    adapter = make(2, targets=r"(query|key|value|out)/kernel", grads="activation")
    got, want = _train_view_and_weight_space_grads(
        model, adapter, params, x, lambda y: jnp.sum(jnp.sin(y))
    )
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5)
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(got))


class Registered(nn.Module):
    """A custom dense layer, x · kernel + bias, called with its input as a keyword."""

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (inputs.shape[-1], 640))
        return inputs @ kernel + self.param("bias", nn.initializers.ones, (640,))


class KeywordCalls(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Dense(640, name="flax")(inputs=x)
        return Registered(name="custom")(inputs=jnp.tanh(x))


def test_registered_dense_modules_and_keyword_inputs_are_tapped() -> None:
    for _ in range(2):  # a class registered twice is listed once
        assert peft_core.register_dense(Registered) is Registered
    assert activation_grads._DENSE_MODULES.count(Registered) == 1
    # an instance was listed, and the next tapped call of an unlisted module failed in
    # isinstance ("arg 2 must be a type"), in every model of the process
    with pytest.raises(TypeError, match="a Registered instance: pass the class Registered"):
        peft_core.register_dense(Registered())
    with pytest.raises(TypeError, match="takes a flax.linen Module class, got <function"):
        peft_core.register_dense(lambda x: x)
    assert activation_grads._DENSE_MODULES.count(Registered) == 1
    model = KeywordCalls()
    x = jax.random.normal(jax.random.key(0), (3, 640))
    params = model.init(jax.random.key(1), x)["params"]
    adapter = peft_core.lora(2, targets=r".*/kernel", grads="activation")
    got, want = _train_view_and_weight_space_grads(
        model, adapter, params, x, lambda y: jnp.sum(jnp.sin(y))
    )
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-4)  # gradients up to ~20


class TwoDense(nn.Module):
    """Two float64 dense layers, 640 wide (held by "auto"), tanh between."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dense = dict(dtype=jnp.float64, param_dtype=jnp.float64)
        return nn.Dense(640, name="d1", **dense)(jnp.tanh(nn.Dense(640, name="d0", **dense)(x)))


# "activation": gradient_tap; "auto" on 16 < MIN_TAP_ROWS rows: weight_gradient_tap
@pytest.mark.parametrize("grads", ["activation", "auto"])
@pytest.mark.parametrize("make", [peft_core.lora, flora_jax.flora])
def test_taps_keep_float64(make: Any, grads: str) -> None:
    # the taps accumulate in x's dtype where it is wider than float32: a float64 model's train
    # view equals its weight space to float64 rounding (float32 accumulation: ~1e-8)
    with jax.enable_x64(True):
        model = TwoDense()
        x = jax.random.normal(jax.random.key(0), (16, 640), jnp.float64)
        params = model.init(jax.random.key(1), x)["params"]
        adapter = make(2, targets=r".*/kernel", grads=grads, dtype=jnp.float64)
        got, want = _train_view_and_weight_space_grads(
            model, adapter, params, x, lambda y: jnp.sum(jnp.sin(y))
        )
        chex.assert_trees_all_close(got, want, rtol=1e-11, atol=1e-11)


def test_auto_leaves_a_narrow_one_d_convolution_in_weight_space() -> None:
    # (3 x 4) x 5 / (12 + 5) = 3.5 FLOP/byte: not held, so the default trains it by autodiff.
    model = OneDConv()
    x = jax.random.normal(jax.random.key(0), (2, 7, 4))
    params = model.init(jax.random.key(1), x)["params"]
    adapter = peft_core.lora(2, targets=r"conv/kernel")
    got, want = _train_view_and_weight_space_grads(
        model, adapter, params, x, lambda y: jnp.sum(jnp.sin(y))
    )
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("grads", ["auto", "pallas"])
@pytest.mark.parametrize(
    ("model", "target", "width"),
    # a (3, 512, 512) conv kernel (384 FLOP/byte) and a (640, 640) one, both held by "auto"
    [
        (OneDConv(512), "conv/kernel", 512),
        (Outer(functools.partial(PreNormed, features=640)), "m/kernel", 640),
    ],
    ids=["one_d_conv", "pre_normed"],
)
@pytest.mark.parametrize("make", [peft_core.lora, flora_jax.flora])
def test_auto_trains_a_wide_layer_the_tap_cannot_serve_in_weight_space(
    make: Any, model: nn.Module, target: str, width: int, grads: str
) -> None:
    """The default grads, "auto", holds a layer by its kernel's shape; one that turns out not
    to be dense when the model runs (a wide 1-D conv) raised at trace time. It now runs on a
    kernel through which its factors get the weight-space gradients."""
    x = jax.random.normal(jax.random.key(0), (2, 5, width))
    params = model.init(jax.random.key(1), x)["params"]
    adapter = make(2, targets=target, grads=grads)
    got, want = _train_view_and_weight_space_grads(
        model, adapter, params, x, lambda y: jnp.sum(jnp.sin(y))
    )
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5)


class TwoSquares(nn.Module):
    """A kernel and a second param of its size, the kernel read after a LayerNorm."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (640, 640))
        gate = self.param("gate", nn.initializers.ones, (640, 640))
        return nn.LayerNorm(name="norm")(x) @ (kernel * gate)


def test_auto_names_a_layer_whose_kernel_it_cannot_tell() -> None:
    x = jnp.ones((2, 640))
    model = Outer(TwoSquares)
    params = model.init(jax.random.key(0), x)["params"]
    adapter = peft_core.lora(2, targets="m/kernel")
    assert adapter.train is not None
    run = adapter.train.wrap_forward(lambda p, inputs: model.apply({"params": p}, inputs))
    eff = adapter.train.apply(params, adapter.init(jax.random.key(1), params))
    with pytest.raises(ValueError, match=r"m holds low-rank .* 2 params of their product's size"):
        run(eff, x)


@pytest.mark.parametrize(
    ("grads", "rows", "want"),
    [
        ("activation", 1, True), ("auto", MIN_TAP_ROWS, True), ("auto", MIN_TAP_ROWS - 1, False),
        ("pallas", MIN_TAP_ROWS, True), ("pallas", MIN_TAP_ROWS - 1, False),
    ],
)  # fmt: skip
def test_auto_taps_activations_on_calls_with_many_rows(grads: str, rows: int, want: bool) -> None:
    assert taps_activations(grads, rows) is want


@pytest.mark.parametrize(
    ("grads", "kind", "rows", "devices", "mesh", "want"),
    [
        ("pallas", "cpu", 1, 1, False, True),  # always, wherever it runs
        ("activation", "NVIDIA H200", 50688, 1, False, False),
        ("auto", "NVIDIA H200", 50688, 1, False, True),  # ViT-B/16 at 256 (calls 109-110)
        ("auto", "NVIDIA H200", 2 * 132 * 128, 1, False, True),  # two programs per SM
        ("auto", "NVIDIA H200", 2 * 132 * 128 - 1, 1, False, False),  # too few rows
        ("auto", "NVIDIA H200", 12672, 1, False, False),  # batch 64: not timed on an H200
        ("auto", "NVIDIA H100 80GB HBM3", 50688, 1, False, True),  # call 112
        ("auto", "NVIDIA H100 80GB HBM3", 12672, 1, False, True),  # batch 64 (calls 119-120)
        ("auto", "NVIDIA H100 80GB HBM3", 12671, 1, False, False),  # fewer: not timed
        ("auto", "NVIDIA H100 PCIe", 50688, 1, False, False),  # not timed there
        ("auto", "cpu", 50688, 1, False, False),
        ("auto", "NVIDIA H200", 50688, 2, False, False),  # several devices: only under a mesh
        ("auto", "NVIDIA H200", 50688, 2, True, True),
        ("auto", ("NVIDIA H200", "NVIDIA H100 PCIe"), 50688, 2, True, False),  # every device's
        # kinds with other thresholds: the largest of theirs
        ("auto", ("NVIDIA H200", "NVIDIA H100 80GB HBM3"), 12672, 2, True, False),
        ("auto", ("NVIDIA H200", "NVIDIA H100 80GB HBM3"), 33792, 2, True, True),
    ],
)  # fmt: skip
def test_auto_reads_once_where_the_kernel_was_timed_faster(
    grads: str, kind: str | tuple[str, ...], rows: int, devices: int, mesh: bool, want: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    kinds = kind if isinstance(kind, tuple) else (kind,) * devices
    fake = [type("Device", (), {"device_kind": k})() for k in kinds]
    monkeypatch.setattr(jax, "devices", lambda *_: fake)
    monkeypatch.setattr(jax, "device_count", lambda *_: devices)
    if not mesh:
        assert reads_once(grads, rows) is want
        return
    cpu = np.array(jax.local_devices(backend="cpu")[:1])
    with jax.sharding.use_abstract_mesh(jax.sharding.Mesh(cpu, ("data",)).abstract_mesh):
        assert reads_once(grads, rows) is want


def test_per_device_counts_the_mesh_in_context_else_every_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jax, "device_count", lambda *_: 4)
    assert per_device(8192) == 2048  # no mesh: data parallel over all 4 devices
    assert per_device(8190) == 8190  # a split that does not divide: whole
    cpu = np.array(jax.local_devices(backend="cpu")[:1])
    with jax.sharding.use_abstract_mesh(jax.sharding.Mesh(cpu, ("data",)).abstract_mesh):
        assert per_device(8192) == 8192  # a one-device mesh, e.g. a bench row on a 4-GPU host


def test_auto_reads_once_only_where_jax_has_the_triton_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = [type("Device", (), {"device_kind": "NVIDIA H100 80GB HBM3"})()]
    monkeypatch.setattr(jax, "devices", lambda *_: fake)
    monkeypatch.setattr(jax, "device_count", lambda *_: 1)
    assert reads_once("auto", 50688)
    monkeypatch.setattr(one_read, "triton_available", lambda: False)
    assert not reads_once("auto", 50688)  # XLA's dots instead (jax 0.11 deprecates Triton)
    assert reads_once("pallas", 50688)  # asked for: the kernel's own error says why it cannot


@pytest.mark.parametrize("make", [peft_core.lora, flora_jax.flora])
def test_auto_holds_the_dense_layers_whose_weight_gradient_is_compute_bound(make: Any) -> None:
    # fan_in fan_out / (fan_in + fan_out): 640 x 640 -> 320 (held), 64 x 256 -> 51.2 (not);
    # a conv kernel never; "activation" holds every dense layer, "weight" none.
    params = {
        "wide": {"kernel": jnp.zeros((640, 640))},
        "narrow": {"kernel": jnp.zeros((64, 256))},
        "conv": {"kernel": jnp.zeros((3, 3, 512, 512))},
    }
    assert MIN_TAP_INTENSITY == 640 * 640 / 1280
    want = {"auto": {"wide"}, "pallas": {"wide"}, "activation": {"wide", "narrow"}, "weight": set()}
    for grads, modules in want.items():
        layers = peft_core.find_layers(params, r".*/kernel")
        assert {layer.name for layer in layers if held(grads, layer)} == modules
        adapter = make(2, targets=r".*/kernel", grads=grads)
        if adapter.train is None:
            assert grads == "weight"
            continue
        eff = adapter.train.apply(params, adapter.init(jax.random.key(0), params))
        assert {k.split("/")[0] for k in flatten(eff) if k.endswith("/lowrank_u")} == modules


class Twice(nn.Module):
    """One dense layer called on the first two rows, then on all of them."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        layer = nn.Dense(640, use_bias=False, name="wide")
        return jnp.sum(jnp.sin(layer(x[:2]))) + jnp.sum(jnp.sin(layer(x)))


@pytest.mark.parametrize(
    ("grads", "want"),
    [
        ("auto", ["weight_gradient_tap", "gradient_tap"]),
        ("activation", ["gradient_tap", "gradient_tap"]),
    ],
)
def test_each_call_gets_its_tap_by_its_rows(
    grads: str, want: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # With MIN_TAP_ROWS = 8, "auto" serves the 2-row call with the weight-gradient tap and the
    # 16-row call with the activation tap; the gradients equal weight-space LoRA's either way.
    import peft_core.activation_grads as ag

    monkeypatch.setattr(ag, "MIN_TAP_ROWS", 8)
    _assert_taps_and_grads(monkeypatch, grads, want)


# "activation": gradient_tap on both calls; "auto" on 2 and 16 < MIN_TAP_ROWS rows:
# weight_gradient_tap on both
@pytest.mark.parametrize("grads", ["activation", "auto"])
def test_a_train_views_forward_outside_differentiation_is_the_weight_space_forward(
    grads: str,
) -> None:
    # not under jax.grad each tap runs its primal (not its VJP's forward): y all the same
    rng = np.random.default_rng(0)  # numpy values: no compiles of random ops
    model, x = Twice(), rng.normal(size=(16, 640)).astype(np.float32)
    params = {"wide": {"kernel": rng.normal(scale=0.05, size=(640, 640)).astype(np.float32)}}
    adapter = peft_core.lora(2, targets=r"wide/kernel", grads=grads)
    assert adapter.train is not None
    aparams = jax.tree.map(
        lambda a: rng.normal(scale=0.1, size=a.shape).astype(np.float32),
        jax.eval_shape(adapter.init, jax.random.key(0), params),
    )
    run = adapter.train.wrap_forward(lambda p, inputs: model.apply({"params": p}, inputs))
    got = run(adapter.train.apply(params, aparams), x)
    want = model.apply({"params": adapter.apply(params, aparams)}, x)
    chex.assert_trees_all_close(got, want, rtol=1e-6)


def _assert_taps_and_grads(
    monkeypatch: pytest.MonkeyPatch, grads: str, want: list[str], mesh: Any = None
) -> None:
    """LoRA (grads=``grads``) on ``Twice``'s 2- and 16-row calls: the taps called, in order, are
    ``want``, and the gradients equal weight-space LoRA's (under ``mesh``, an abstract mesh)."""
    import peft_core.activation_grads as ag

    calls: list[str] = []
    for name in ("gradient_tap", "weight_gradient_tap"):
        tap = getattr(ag, name)
        monkeypatch.setattr(ag, name, lambda *a, _t=tap, _n=name: calls.append(_n) or _t(*a))
    model, x = Twice(), jax.random.normal(jax.random.key(0), (16, 640))
    params = model.init(jax.random.key(1), x)["params"]
    adapter = peft_core.lora(2, targets=r"wide/kernel", grads=grads)
    with jax.sharding.use_abstract_mesh(mesh) if mesh is not None else contextlib.nullcontext():
        got, want_grads = _train_view_and_weight_space_grads(model, adapter, params, x, jnp.sum)
    assert calls == want
    chex.assert_trees_all_close(got, want_grads, rtol=1e-4, atol=1e-5)


def test_combined_adapters_keep_their_train_views() -> None:
    """combine() of adapters with one forward wrapper trains through their taps (it dropped the
    views: weight space, slower), with weight space's gradients; other wrappers: weight space."""
    with jax.enable_x64(True):
        model = TwoDense()
        x = jax.random.normal(jax.random.key(0), (16, 640), jnp.float64)
        params = model.init(jax.random.key(1), x)["params"]
        dense = dict(grads="activation", dtype=jnp.float64)
        both = peft_core.combine(
            peft_core.lora(2, targets="d0/kernel", **dense),
            flora_jax.flora(2, targets="d1/kernel", **dense),
        )
        got, want = _train_view_and_weight_space_grads(
            model, both, params, x, lambda y: jnp.sum(jnp.sin(y))
        )
        chex.assert_trees_all_close(got, want, rtol=1e-11, atol=1e-11)
        assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(got))
        assert both.train is not None
        tapped_params = flatten(both.train.apply(params, both.init(jax.random.key(2), params)))
        assert {"d0/lowrank_u", "d1/lowrank_u"} <= set(tapped_params)
    mixed = peft_core.combine(
        peft_core.lora(2, targets="d0/kernel", grads="activation"),
        flora_jax.flora(2, targets="d1/kernel", grads="auto"),
    )
    assert mixed.train is None


class OffsetTokens(nn.Module):
    """Dense "d0" on (B, T, 16) tokens, then Dense "d1" on its GELU with an input offset (a
    param, as the ViT's value bias; by keyword, or ``positional``), mean-pooled over the tokens."""

    positional: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        offset = self.param("offset", nn.initializers.normal(1.0), (16,))
        x, d1 = nn.gelu(Dense(16, name="d0")(x)), Dense(4, name="d1")
        y = d1(x, offset) if self.positional else d1(x, input_offset=offset)
        return jnp.mean(y, axis=1)


# "activation": gradient_tap; "auto" (every layer held) on 32 < MIN_TAP_ROWS rows:
# weight_gradient_tap; "pallas" (every call tapped): one_read_tap, reading x once in 16-row blocks
@pytest.mark.parametrize("grads", ["activation", "auto", "pallas"])
def test_a_train_view_under_vmap_gives_each_share_its_own_factor_gradients(
    grads: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GLoRA's supernet runs its K > 1 subnets under jax.vmap, each on its share of the batch,
    and LoRA combined with it trains through its taps there: a tap whose output did not vary
    over the vmap had the shares' output gradients summed before its VJP met each share's x."""
    import peft_core.activation_grads as ag

    monkeypatch.setattr(ag, "MIN_TAP_INTENSITY", 0)
    monkeypatch.setattr(ag, "MIN_TAP_ROWS", 0 if grads == "pallas" else MIN_TAP_ROWS)
    monkeypatch.setattr(one_read, "TILES", one_read.Tiles(rows=16, blocks=2, cols=16))
    model, x = OffsetTokens(), jax.random.normal(jax.random.key(0), (2, 2, 16, 16))
    params = _random(model.init(jax.random.key(1), x[0])["params"], 4, 0.5)
    adapter = peft_core.lora(2, targets=r"d\d/kernel", grads=grads)
    view = adapter.train
    assert view is not None
    aparams = _random(adapter.init(jax.random.key(2), params), 3, 0.5)

    def grad(apply: Any, forward: Any) -> Any:
        def share_loss(ap: Any, share: jax.Array) -> jax.Array:
            return jnp.sum(jnp.sin(forward({"params": apply(params, ap)}, share)))

        shares = jax.vmap(share_loss, in_axes=(None, 0))
        return jax.jit(jax.grad(lambda ap: jnp.sum(shares(ap, x))))(aparams)

    got = grad(view.apply, view.wrap_forward(model.apply))
    want = grad(adapter.apply, model.apply)
    chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-5)


def test_an_input_offset_passed_positionally_reaches_the_tap() -> None:
    # read from the keyword alone, it was missed: dU lacked offset ⊗ Σ g, dV (offset U)ᵀ dy
    model, x = OffsetTokens(positional=True), jax.random.normal(jax.random.key(0), (2, 3, 16))
    params = _random(model.init(jax.random.key(1), x)["params"], 4, 0.5)
    adapter = peft_core.lora(2, targets=r"d1/kernel", grads="activation")
    got, want = _train_view_and_weight_space_grads(model, adapter, params, x, jnp.sum)
    chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-5)


class HalfOffsetLayer(nn.Module):
    """One bf16-compute Dense (f32 params) given an f32 param as its input offset, as the ViT's
    out projection its value bias."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        offset = self.param("offset", nn.initializers.zeros, (x.shape[-1],))
        return Dense(8, dtype=jnp.bfloat16, name="dense")(x, input_offset=offset)


def test_the_tap_differentiates_the_offset_the_bf16_layer_added(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The layer adds bf16(c) to its bf16 input: the tap's x + c must be that sum. "auto" on 32
    rows runs the weight-gradient tap, whose f32 G = (x + bf16(c))ᵀ dy is then exact for bf16 x
    and dy; with the f32 offset it was off by c's rounding (relative 2e-3)."""
    monkeypatch.setattr(activation_grads, "MIN_TAP_INTENSITY", 0)  # hold this small layer
    keys = jax.random.split(jax.random.key(0), 3)
    as_bf16 = lambda a: jnp.asarray(a, jnp.bfloat16).astype(jnp.float32)  # noqa: E731
    x, d = (
        as_bf16(jax.random.normal(keys[0], (32, 16))),
        as_bf16(jax.random.normal(keys[1], (32, 8))),
    )
    c = 3 * jax.random.normal(keys[2], (16,)) + 1e-3  # not bf16 numbers
    assert not np.array_equal(np.asarray(as_bf16(c)), np.asarray(c))
    model = HalfOffsetLayer()
    params = {**model.init(jax.random.key(1), x)["params"], "offset": c}
    adapter = peft_core.lora(2, targets=r"dense/kernel", grads="auto")
    view = adapter.train
    assert view is not None
    aparams = _random(adapter.init(jax.random.key(2), params), 3, 0.5)
    run = view.wrap_forward(lambda p, inputs: model.apply({"params": p}, inputs))
    loss = lambda ap: jnp.sum(run(view.apply(params, ap), x).astype(jnp.float32) * d)  # noqa: E731
    got = flatten(jax.grad(loss)(aparams))
    a, b = (np.asarray(flatten(aparams)[f"dense/{k}"], np.float64) for k in "ab")
    inputs = np.asarray(x, np.float64) + np.asarray(as_bf16(c), np.float64)
    g = inputs.T @ np.asarray(d, np.float64)  # dL/dW of L = Σ y d, y = (x + bf16(c)) W + bias
    chex.assert_trees_all_close(
        {"a": got["dense/a"], "b": got["dense/b"]},
        {"a": g @ b.T, "b": a.T @ g},
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("grads", ["activation", "auto"])
def test_a_combined_adapter_after_a_train_view_does_not_see_its_factors(grads: str) -> None:
    """LoRA on the kernels, then full fine-tuning of everything else (the biases): the second
    adapter's targets read the params without the first view's factors beside the kernels
    (they were "missing" from its delta), and the gradients are weight space's."""
    with jax.enable_x64(True):
        model = TwoDense()
        x = jax.random.normal(jax.random.key(0), (16, 640), jnp.float64)
        params = model.init(jax.random.key(1), x)["params"]
        both = peft_core.combine(
            peft_core.lora(2, targets=r"d\d/kernel", grads=grads, dtype=jnp.float64),
            peft_core.full(exclude=r".*/kernel"),
        )
        got, want = _train_view_and_weight_space_grads(
            model, both, params, x, lambda y: jnp.sum(jnp.sin(y))
        )
        chex.assert_trees_all_close(got, want, rtol=1e-11, atol=1e-11)
        assert set(flatten(got[1])) == {"d0/bias", "d1/bias"}


def test_pallas_grads_need_the_mesh_on_several_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    # the kernel is not partitioned by XLA (it would gather x and dy on every device): with
    # several devices it runs per device under the mesh in context (tests/test_sharding.py)
    import peft_core.activation_grads as ag

    model, x = Twice(), jax.random.normal(jax.random.key(0), (16, 640))
    params = model.init(jax.random.key(1), x)["params"]
    adapter = peft_core.lora(2, targets=r"wide/kernel", grads="pallas")
    monkeypatch.setattr(ag, "MIN_TAP_ROWS", 0)
    monkeypatch.setattr(one_read, "TILES", one_read.Tiles(rows=16, blocks=1, cols=16))
    monkeypatch.setattr(jax, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"on 2 devices needs the mesh that splits its rows"):
        _train_view_and_weight_space_grads(model, adapter, params, x, jnp.sum)


@pytest.mark.parametrize(
    ("mesh", "want"),
    [(False, ["weight_gradient_tap", "weight_gradient_tap"]),  # 1 and 8 rows on each of 2
     (True, ["weight_gradient_tap", "gradient_tap"])],  # a one-device mesh: 2 and 16 rows
)  # fmt: skip
def test_each_call_gets_its_tap_by_its_rows_per_device(
    mesh: bool, want: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # With MIN_TAP_ROWS = 16 on two devices and no mesh in context, the 16-row call runs 8 rows
    # on each device: "auto" serves it with the weight-gradient tap; under a one-device mesh
    # it keeps its 16 rows and gets the activation tap
    import peft_core.activation_grads as ag

    monkeypatch.setattr(ag, "MIN_TAP_ROWS", 16)
    monkeypatch.setattr(jax, "device_count", lambda *_: 2)
    cpu = np.array(jax.local_devices(backend="cpu")[:1])
    one_device = jax.sharding.Mesh(cpu, ("data",)).abstract_mesh
    _assert_taps_and_grads(monkeypatch, "auto", want, one_device if mesh else None)


@pytest.mark.parametrize("with_offset", [False, True])
@pytest.mark.parametrize(
    ("tap", "fan_in", "fan_out"),
    [(gradient_tap, 12, 10), (weight_gradient_tap, 12, 10), (one_read_tap, 10, 12),
     (one_read_tap, 12, 10)],
)  # fmt: skip
def test_each_tap_accumulates_float64_in_float64(
    tap: Any, fan_in: int, fan_out: int, with_offset: bool
) -> None:
    # float64 x and factors: every product (x U, dy Vᵀ, xᵀ g, hᵀ dy, the offset's terms) in
    # float64, whichever of x and dy the one-read tap reads once (float32 anywhere: ~1e-8)
    with jax.enable_x64(True):
        k = jax.random.split(jax.random.key(0), 5)
        x = jax.random.normal(k[0], (24, fan_in), jnp.float64)
        u = jax.random.normal(k[1], (fan_in, 3), jnp.float64)
        v = jax.random.normal(k[2], (3, fan_out), jnp.float64)
        dy = jax.random.normal(k[3], (24, fan_out), jnp.float64)
        offset = jax.random.normal(k[4], (fan_in,), jnp.float64) if with_offset else None
        _, vjp = jax.vjp(lambda x, u, v: tap(jnp.zeros_like(dy), x, u, v, offset), x, u, v)
        _, du, dv = vjp(dy)
        xn = np.asarray(x) + (np.asarray(offset) if with_offset else 0.0)
        un, vn, dyn = np.asarray(u), np.asarray(v), np.asarray(dy)
        assert du.dtype == dv.dtype == jnp.float64
        np.testing.assert_allclose(du, xn.T @ dyn @ vn.T, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dv, un.T @ xn.T @ dyn, rtol=1e-12, atol=1e-12)
