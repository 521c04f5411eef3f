"""GLoRA adapter vs an independent numpy port of the reference layer (torch layout (out, in)).

The reference below follows Arnav0400/ViT-Slim GLoRA/layer.py: A = Ad[:, :r] @ Au[:r, :],
vector Ad[:, 0:1], scalar Ad[0, 0]; W = W + W*A + B, b = b + b*D + E + W @ C. Our support
tensors map to its names as documented in glora_jax/support.py: Ad = a_out^T, Au = a_in^T (same
for B), Cd = c_in, Cu = c_out, D = d, E = e.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from jaxprs import equations

import glora_jax
import peft_core
from experiments.models.vit import ViT, ViTConfig
from glora_jax import GLoRASpace
from glora_jax.adapter import QKV_FUSE
from glora_jax.supernet import CONFIG_AXIS
from peft_core.adapter import Adapter, group_by
from peft_core.paths import flatten, unflatten
from peft_core.targets import SCANNED

TENSORS = "ABCDE"


# ---- the reference, in numpy and torch layout -------------------------------------------------


def ref_path(option: str, xd: np.ndarray, xu: np.ndarray | None = None) -> Any:
    """prepare_path of the reference: the effective A/B/C (with xu) or D/E (without)."""
    if xu is not None:
        if option.startswith("lora_"):
            r = int(option.split("_")[1])
            return xd[:, :r] @ xu[:r, :]
        if option == "vector":
            return xd[:, 0:1]
        if option == "scalar":
            return xd[0, 0]
        assert option == "none"
        return np.zeros((xd.shape[0], xu.shape[1]))
    if option == "vector":
        return xd
    if option == "scalar":
        return xd[0]
    assert option == "none"
    return np.zeros(1)


def ref_linear(w, b, sup, choice):
    """One torch Linear: w (out, in), b (out,) or None -> adapted (w, b)."""
    a = ref_path(choice["A"], sup["a_out"].T, sup["a_in"].T)
    bb = ref_path(choice["B"], sup["b_out"].T, sup["b_in"].T)
    w_new = w + w * a + bb
    if b is None:
        assert all(choice[t] == "none" for t in "CDE")
        return w_new, None
    c = ref_path(choice["C"], sup["c_in"], sup["c_out"])
    d, e = ref_path(choice["D"], sup["d"]), ref_path(choice["E"], sup["e"])
    return w_new, b + b * d + e + (w @ c)[:, 0]


def ref_apply(params, aparams, readable, groups):
    """Adapted params. groups: {layer: (member module paths in fused order, n_stack)}."""
    flat = {k: np.asarray(v, np.float64) for k, v in flatten(params).items()}
    out = dict(flat)
    for name, (members, n_stack) in groups.items():
        kernels = [flat[f"{m}/kernel"] for m in members]
        has_bias = f"{members[0]}/bias" in flat
        biases = [flat[f"{m}/bias"] for m in members] if has_bias else None
        stack = kernels[0].shape[:n_stack]
        sup_all = {
            path.rsplit("/", 1)[1]: np.asarray(v, np.float64)
            for path, v in flatten(aparams).items()
            if path.rsplit("/", 1)[0] == name
        }
        for idx in np.ndindex(*stack):
            key = f"{name}[{','.join(map(str, idx))}]" if stack else name
            # fan_out of each member: its bias size, or the kernel's last axis without a bias
            outs = [
                (b[idx].size if has_bias else k.shape[-1])
                for k, b in zip(kernels, biases or kernels, strict=True)
            ]
            w = np.concatenate(
                [k[idx].reshape(-1, o).T for k, o in zip(kernels, outs, strict=True)], 0
            )
            b = np.concatenate([x[idx].ravel() for x in biases]) if biases else None
            sup = {k: v[idx] for k, v in sup_all.items()}
            w_new, b_new = ref_linear(w, b, sup, readable[key])
            rows = np.cumsum(outs)[:-1]
            for m, k, w_m in zip(members, kernels, np.split(w_new, rows, 0), strict=True):
                out[f"{m}/kernel"] = out[f"{m}/kernel"].copy()
                out[f"{m}/kernel"][idx] = w_m.T.reshape(k[idx].shape)
            if b_new is not None:
                for m, x, b_m in zip(members, biases, np.split(b_new, rows), strict=True):
                    out[f"{m}/bias"] = out[f"{m}/bias"].copy()
                    out[f"{m}/bias"][idx] = b_m.reshape(x[idx].shape)
    return unflatten(out)


# ---- layer kinds: params, adapter kwargs and the reference's grouping ------------------------


def _leaf(rng, *shape):
    return jnp.asarray(rng.normal(size=shape), jnp.float32)


def _kind(name: str) -> tuple[dict, dict, dict]:
    rng = np.random.default_rng(0)
    attn = "blk/MultiHeadDotProductAttention_0"
    if name == "dense":
        p = {"fc": {"kernel": _leaf(rng, 6, 5), "bias": _leaf(rng, 5)}}
        return p, {"targets": r"fc/kernel"}, {"fc": (["fc"], 0)}
    if name == "q_like":
        p = {"q": {"kernel": _leaf(rng, 8, 2, 3), "bias": _leaf(rng, 2, 3)}}
        return p, {"targets": r"q/kernel"}, {"q": (["q"], 0)}
    if name == "out_like":
        p = {"o": {"kernel": _leaf(rng, 2, 3, 8), "bias": _leaf(rng, 8)}}
        return p, {"targets": r"o/kernel"}, {"o": (["o"], 0)}
    if name == "conv":
        p = {"conv": {"kernel": _leaf(rng, 3, 3, 2, 4), "bias": _leaf(rng, 4)}}
        return p, {"targets": r"conv/kernel"}, {"conv": (["conv"], 0)}
    if name == "no_bias":
        p = {"fc": {"kernel": _leaf(rng, 6, 5)}}
        return p, {"targets": r"fc/kernel"}, {"fc": (["fc"], 0)}
    if name == "stacked":
        p = {"fc": {"kernel": _leaf(rng, 3, 6, 5), "bias": _leaf(rng, 3, 5)}}
        return p, {"targets": r"fc/kernel", "stacked": r"fc/.*"}, {"fc": (["fc"], 1)}
    if name in ("qkv", "stacked_qkv"):
        lead = (2,) if name == "stacked_qkv" else ()
        p = {
            n: {"kernel": _leaf(rng, *lead, 8, 2, 3), "bias": _leaf(rng, *lead, 2, 3)}
            for n in ("query", "key", "value")
        }
        kw = {"targets": r".*/(query|key|value)/kernel"}
        if lead:
            kw["stacked"] = r".*"
        members = [f"{attn}/{n}" for n in ("key", "query", "value")]  # fused in path order
        return (
            unflatten({f"{attn}/{k}": v for k, v in flatten(p).items()}),
            kw,
            {f"{attn}/qkv": (members, len(lead))},
        )
    raise ValueError(name)


KINDS = ["dense", "q_like", "out_like", "conv", "no_bias", "stacked", "qkv", "stacked_qkv"]
# Every kind in a two-rank space (lora_3 and lora_2 from one rank-3 tensor) and two one-rank ones.
CASES = [(kind, (3, 2)) for kind in KINDS] + [("dense", (2,)), ("stacked_qkv", (1,))]


def space_of(adapter: Adapter, params: dict) -> GLoRASpace:
    assert adapter.space is not None
    return adapter.space(params)


def _random_aparams(adapter, params, seed=1):
    """Support tensors drawn N(0, 1) (numpy): every option gives a non-zero, distinct update."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(adapter.init, jax.random.key(0), params)
    return jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)


def _random_readable(space, rng, **force):
    """Every slice: each tensor uniform over its legal options; ``force`` where it is legal."""
    out = {}
    for spec in space.specs:
        legal = space.legal(spec.name)
        for key in spec.slice_names():
            out[key] = {
                t: force[t] if force.get(t) in legal[t] else str(rng.choice(legal[t]))
                for t in TENSORS
            }
    return out


class Setup(NamedTuple):
    params: dict
    adapter: Any
    space: Any
    groups: dict
    readables: list  # one per legal (tensor, option) of the layer, that option forced
    cfgs: dict  # the readables encoded and stacked: (n, *stack, 5)
    apply_batched: Callable  # jit(vmap(apply)) over cfgs, named CONFIG_AXIS as the supernet's


@functools.cache
def _setup(kind: str, ranks: tuple[int, ...]) -> Setup:
    """Compiled once per (kind, ranks) and shared by the tests: compiling dominates CPU time."""
    params, kw, groups = _kind(kind)
    adapter = glora_jax.glora(ranks, **kw)
    space = space_of(adapter, params)
    (layer,) = space.layers
    rng = np.random.default_rng(7)
    readables = [
        _random_readable(space, rng, **{t: o}) for t in TENSORS for o in space.legal(layer)[t]
    ]
    cfgs = jax.tree.map(lambda *c: np.stack(c), *[space.encode(r) for r in readables])
    batched = jax.jit(jax.vmap(adapter.apply, in_axes=(None, None, 0), axis_name=CONFIG_AXIS))
    return Setup(params, adapter, space, groups, readables, cfgs, batched)


def _row(tree, k):
    return jax.tree.map(lambda x: x[k], tree)


# ---- effective W and b, every option of every tensor -----------------------------------------


@pytest.mark.parametrize("kind, ranks", CASES, ids=[f"{k}-{r}" for k, r in CASES])
def test_apply_matches_reference_for_every_option(kind, ranks):
    st = _setup(kind, ranks)
    aparams = _random_aparams(st.adapter, st.params)
    got = st.apply_batched(st.params, aparams, st.cfgs)
    for k, readable in enumerate(st.readables):
        want = ref_apply(st.params, aparams, readable, st.groups)
        chex.assert_trees_all_close(
            _row(got, k), want, rtol=1e-5, atol=1e-5, custom_message=str(readable)
        )
    options = {(t, c[t]) for r in st.readables for c in r.values() for t in TENSORS}
    (layer,) = st.space.layers
    assert options == {(t, o) for t, opts in st.space.legal(layer).items() for o in opts}


def test_no_bias_layer_has_only_weight_tensors():
    params, kw, _ = _kind("no_bias")
    adapter = glora_jax.glora((3,), **kw)
    aparams = adapter.init(jax.random.key(0), params)
    assert set(aparams["fc"]) == {"a_in", "a_out", "b_in", "b_out"}
    assert space_of(adapter, params).legal("fc") == {
        "A": ("lora_3", "vector", "scalar", "none"),
        "B": ("lora_3", "vector", "scalar", "none"),
        "C": ("none",),
        "D": ("none",),
        "E": ("none",),
    }


def test_init_shapes_and_distributions():
    params, kw, _ = _kind("stacked_qkv")
    aparams = glora_jax.glora((3, 2), **kw).init(jax.random.key(0), params)
    sup = aparams["blk"]["MultiHeadDotProductAttention_0"]["qkv"]
    fan_in, fan_out, r = 8, 18, 3
    chex.assert_trees_all_equal_shapes(
        sup,
        {
            "a_in": np.zeros((2, fan_in, r)),
            "a_out": np.zeros((2, r, fan_out)),
            "b_in": np.zeros((2, fan_in, r)),
            "b_out": np.zeros((2, r, fan_out)),
            "c_in": np.zeros((2, fan_in, r)),
            "c_out": np.zeros((2, r, 1)),
            "d": np.zeros((2, fan_out)),
            "e": np.zeros((2, fan_out)),
        },
    )
    for k in ("a_out", "b_out", "c_in", "d", "e"):
        assert not np.asarray(sup[k]).any(), k
    for k, bound in (("a_in", (6 / (fan_in + r)) ** 0.5), ("c_out", (6 / (r + 1)) ** 0.5)):
        x = np.asarray(sup[k])
        assert np.abs(x).max() <= bound and np.abs(x).max() > 0.5 * bound, k
    assert not np.allclose(sup["a_in"][0], sup["a_in"][1]), "stack slices share an init"


@pytest.mark.parametrize("stack", [(), (256,), (16, 16)])
def test_xavier_bound_is_the_trailing_matrix_s_whatever_the_stack(stack):
    """torch's xavier_uniform_ on each (rows, cols) slice: U(-b, b), b = sqrt(6 / (rows + cols)),
    so std b / sqrt(3); the stack axes of scanned blocks must not shrink it."""
    rows, cols = 24, 8
    (supports,) = glora_jax.support.init_supports(
        jax.random.key(0), [{"a_in": (*stack, rows, cols)}], dtype=jnp.float32
    )
    x = np.asarray(supports["a_in"])
    bound = (6 / (rows + cols)) ** 0.5
    assert np.abs(x).max() <= bound
    np.testing.assert_allclose(x.std(), bound / 3**0.5, rtol=0.1)


# ---- identity at init, merge, a tiny model ---------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_identity_at_init_for_every_option(kind):
    st = _setup(kind, (3, 2))
    aparams = st.adapter.init(jax.random.key(0), st.params)
    effs = st.apply_batched(st.params, aparams, st.cfgs)
    n = len(st.readables)
    chex.assert_trees_all_equal(
        effs, jax.tree.map(lambda p: jnp.broadcast_to(p, (n, *p.shape)), st.params)
    )


class TinyMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = jnp.tanh(nn.Dense(5, name="Dense_0")(x))
        return nn.Dense(4, use_bias=False, name="Dense_1")(x)


def test_merged_tiny_model_logits_match_reference():
    model = TinyMLP()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(7, 6)).astype(np.float32)
    params = {
        "Dense_0": {"kernel": _leaf(rng, 6, 5), "bias": _leaf(rng, 5)},
        "Dense_1": {"kernel": _leaf(rng, 5, 4)},
    }
    chex.assert_trees_all_equal_shapes(params, model.init(jax.random.key(0), x)["params"])
    adapter = glora_jax.glora((3, 2), targets=r"Dense_\d/kernel")
    space = space_of(adapter, params)
    aparams = _random_aparams(adapter, params)
    readable = _random_readable(space, np.random.default_rng(4), A="lora_2", C="lora_3")
    merged = jax.jit(adapter.merge)(params, aparams, space.encode(readable))
    chex.assert_trees_all_equal_shapes_and_dtypes(merged, params)
    logits = jax.jit(model.apply)
    ref = ref_apply(
        params, aparams, readable, {"Dense_0": (["Dense_0"], 0), "Dense_1": (["Dense_1"], 0)}
    )
    adapted = (
        np.tanh(x @ ref["Dense_0"]["kernel"] + ref["Dense_0"]["bias"]) @ ref["Dense_1"]["kernel"]
    )
    got = logits({"params": merged}, x)
    chex.assert_trees_all_close(got, adapted, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got, logits({"params": params}, x), atol=1e-3), "no update"


def test_bf16_params_computed_in_f32_returned_in_bf16():
    params, kw, groups = _kind("qkv")
    params16 = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
    adapter = glora_jax.glora((3, 2), **kw)
    space = space_of(adapter, params16)
    aparams = _random_aparams(adapter, params16)
    readable = _random_readable(space, np.random.default_rng(5), A="vector", B="lora_3")
    got = jax.jit(adapter.apply)(params16, aparams, space.encode(readable))
    chex.assert_trees_all_equal_shapes_and_dtypes(got, params16)
    want = ref_apply(
        jax.tree.map(lambda p: p.astype(jnp.float32), params16), aparams, readable, groups
    )
    want16 = jax.tree.map(lambda w: jnp.asarray(w, jnp.float32).astype(jnp.bfloat16), want)
    # Within one bf16 ulp of the f64 reference rounded to bf16 (a bf16 computation is not).
    chex.assert_trees_all_close(
        jax.tree.map(lambda a: a.astype(jnp.float32), got),
        jax.tree.map(lambda a: a.astype(jnp.float32), want16),
        rtol=2**-7,
        atol=0,
    )


@pytest.mark.parametrize("kind", ["dense", "stacked_qkv"])
def test_update_dtype_bf16_computes_apply_in_bf16_and_merge_in_f32(kind):
    params, kw, groups = _kind(kind)
    f32 = glora_jax.glora((3, 2), **kw)
    bf16 = glora_jax.glora((3, 2), update_dtype=jnp.bfloat16, **kw)
    space = space_of(bf16, params)
    aparams = _random_aparams(bf16, params)
    readable = _random_readable(space, np.random.default_rng(6), A="lora_3", B="lora_2")
    cfg = space.encode(readable)
    got = jax.jit(bf16.apply)(params, aparams, cfg)  # every leaf updated: all in bf16
    chex.assert_trees_all_equal_shapes(got, params)
    assert {x.dtype for x in jax.tree.leaves(got)} == {jnp.dtype(jnp.bfloat16)}
    want = ref_apply(params, aparams, readable, groups)
    chex.assert_trees_all_close(
        jax.tree.map(lambda x: x.astype(jnp.float32), got), want, rtol=2e-2, atol=5e-2
    )
    # the weight-sized arithmetic itself is bf16 (f32 only for the f32 adapter)
    for adapter, want_dtypes in ((bf16, {jnp.bfloat16}), (f32, {jnp.float32})):
        jaxpr = jax.make_jaxpr(adapter.apply)(params, aparams, cfg).jaxpr
        sized = {
            v.aval.dtype
            for eqn in jaxpr.eqns
            for v in eqn.outvars
            if eqn.primitive.name in ("mul", "add", "dot_general")
            and v.aval.size >= min(x.size for x in jax.tree.leaves(params) if x.ndim > 1)
        }
        assert sized == {jnp.dtype(d) for d in want_dtypes}, (adapter, sized)
    # merge: the f32 sum whatever update_dtype, so the f32 adapter's exactly
    chex.assert_trees_all_equal(
        jax.jit(bf16.merge)(params, aparams, cfg), jax.jit(f32.merge)(params, aparams, cfg)
    )
    with pytest.raises(TypeError, match="compute"):  # no knob to merge in another dtype
        bf16.merge(params, aparams, cfg, compute=jnp.float16)  # type: ignore[call-arg]
    f32_apply = jax.jit(f32.apply)(params, aparams, cfg)
    chex.assert_trees_all_close(f32_apply, want, rtol=1e-5, atol=1e-5)

    # the supports' gradients through a bf16 apply: the f32 ones to bf16 precision
    probe = jax.tree.map(lambda p: np.random.default_rng(8).normal(size=p.shape), params)

    def loss(adapter, ap):
        eff = adapter.apply(params, ap, cfg)
        return sum(
            jnp.vdot(e, q)
            for e, q in zip(jax.tree.leaves(eff), jax.tree.leaves(probe), strict=True)
        )

    g16 = jax.jit(jax.grad(functools.partial(loss, bf16)))(aparams)
    g32 = jax.jit(jax.grad(functools.partial(loss, f32)))(aparams)
    chex.assert_trees_all_equal_dtypes(g16, aparams)
    scale = max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g32))
    chex.assert_trees_all_close(g16, g32, atol=3e-2 * scale)
    assert any(float(jnp.abs(x).max()) > 0 for x in jax.tree.leaves(g32))


# ---- jit, vmap, grads --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dense", "no_bias", "stacked_qkv"])
def test_concrete_cfgs_take_the_static_path_and_match_reference(kind):
    # A concrete cfg lets apply leave "none" tensors out at trace time (static_none); each
    # readable forces one option, so every tensor is statically none in some of them.
    st = _setup(kind, (3, 2))
    aparams = _random_aparams(st.adapter, st.params)
    skipped = set()
    (layer,) = st.space.layers
    for k, readable in enumerate(st.readables):
        cfg = _row(st.cfgs, k)
        skipped |= glora_jax.support.static_none(cfg[layer], st.space.options)
        want = ref_apply(st.params, aparams, readable, st.groups)
        got = st.adapter.apply(st.params, aparams, cfg)  # cfg concrete: the static path
        chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5, custom_message=str(readable))
    assert {"A", "B"} <= skipped


def test_static_none_only_for_concrete_cfgs_with_none_in_every_slice():
    st = _setup("stacked", (3, 2))
    (layer,) = st.space.layers
    slices = list(st.space.fixed({"A": "none", "B": "none", "C": "none", "D": "none",
                                  "E": "none"})[layer])  # fmt: skip
    cfg = np.stack(slices)
    assert glora_jax.support.static_none(cfg, st.space.options) == set(TENSORS)
    cfg[-1, 1] = 0  # one slice uses B: B is no longer statically none
    assert glora_jax.support.static_none(cfg, st.space.options) == set(TENSORS) - {"B"}
    traced = jax.jit(lambda c: jnp.int32(len(glora_jax.support.static_none(c, st.space.options))))
    assert int(traced(cfg)) == 0


def test_bitfit_cfg_leaves_kernels_untouched_and_forms_no_weight_gradient():
    params, kw, _ = _kind("dense")
    adapter = glora_jax.glora((3, 2), **kw)
    space = space_of(adapter, params)
    aparams = _random_aparams(adapter, params)
    bitfit = space.fixed(glora_jax.presets.bitfit())
    eff = adapter.apply(params, aparams, bitfit)
    assert eff["fc"]["kernel"] is params["fc"]["kernel"]  # not W0 + 0: the very same array
    assert not np.allclose(eff["fc"]["bias"], params["fc"]["bias"])
    x = jnp.ones((16, params["fc"]["kernel"].shape[0]))

    def loss(ap, cfg):
        p = adapter.apply(params, ap, cfg)["fc"]
        return jnp.sum((x @ p["kernel"] + p["bias"]) ** 2)

    def flops(fn, *args):  # lowered for the CPU: XLA's GPU cost model counts no FLOPs
        args = jax.device_put(args, jax.local_devices(backend="cpu")[0])
        cost = jax.jit(fn).lower(*args).cost_analysis()
        return (cost[0] if isinstance(cost, list) else cost)["flops"]

    static = flops(jax.grad(lambda ap: loss(ap, bitfit)), aparams)  # cfg concrete
    traced = flops(jax.grad(loss), aparams, bitfit)  # cfg traced: every term computed
    fan_in, fan_out = params["fc"]["kernel"].shape
    assert traced - static >= 2 * 16 * fan_in * fan_out  # at least the dW = xᵀ·dy product
    chex.assert_trees_all_close(
        jax.grad(lambda ap: loss(ap, bitfit))(aparams), jax.grad(loss)(aparams, bitfit),
        rtol=1e-5, atol=1e-5,
    )  # fmt: skip


def test_same_shaped_layers_are_updated_as_one_batch_and_match_reference():
    rng = np.random.default_rng(3)
    params = {f"fc{i}": {"kernel": _leaf(rng, 6, 5), "bias": _leaf(rng, 5)} for i in range(3)} | {
        "wide": {"kernel": _leaf(rng, 6, 7), "bias": _leaf(rng, 7)}
    }
    adapter = glora_jax.glora((3, 2), targets=r".*/kernel")
    space = space_of(adapter, params)
    aparams = _random_aparams(adapter, params)
    groups = {name: ([name], 0) for name in params}
    readable = _random_readable(
        space, np.random.default_rng(4), A="lora_3", B="vector", C="lora_2", D="vector", E="scalar"
    )
    cfg = space.encode(readable)
    layers = glora_jax.adapter.glora_layers(
        params, targets=r".*/kernel", exclude=None, stacked=None, fuse=None, out_axes=None
    )

    def batches(cfg):
        key = functools.partial(glora_jax.adapter.batch_key, cfg=cfg, options=space.options)
        return sorted(sorted(layer.name for layer in group) for group in group_by(layers, key))

    assert batches(cfg) == [["fc0", "fc1", "fc2"], ["wide"]]
    want = ref_apply(params, aparams, readable, groups)
    traced = jax.jit(adapter.apply)(params, aparams, cfg)
    chex.assert_trees_all_close(adapter.apply(params, aparams, cfg), want, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(traced, want, rtol=1e-5, atol=1e-5)
    # a layer whose B is statically "none" leaves the batch of the others
    readable["fc1"]["B"] = "none"
    cfg = space.encode(readable)
    assert batches(cfg) == [["fc0", "fc2"], ["fc1"], ["wide"]]
    want = ref_apply(params, aparams, readable, groups)
    chex.assert_trees_all_close(adapter.apply(params, aparams, cfg), want, rtol=1e-5, atol=1e-5)


def test_vmap_over_cfgs_equals_loop():
    st = _setup("stacked_qkv", (3, 2))
    aparams = _random_aparams(st.adapter, st.params)
    cfgs = st.space.sample(jax.random.key(2), (len(st.readables),))
    batched = st.apply_batched(st.params, aparams, cfgs)
    one = jax.jit(st.adapter.apply)
    for k in range(3):
        chex.assert_trees_all_close(
            _row(batched, k), one(st.params, aparams, _row(cfgs, k)), rtol=1e-6, atol=1e-6
        )
    query = flatten(batched)["blk/MultiHeadDotProductAttention_0/query/kernel"]
    assert len({float(jnp.sum(q)) for q in query}) == len(query), "cfgs gave equal weights"


def test_vmapped_cfgs_are_a_batch_axis_of_every_weight_sized_product():
    """Under a vmap over K > 1 configs named CONFIG_AXIS (as the supernet names its), each A/B
    product (and its gradients) must carry the config axis as a GEMM batch axis on both operands:
    a config axis free on one side puts it inside a weight-sized result, which XLA then
    transposes (8 ms of copies per ViT-B step at K=4 on an H100, docs/benchmarks.md)."""
    st = _setup("stacked_qkv", (3, 2))  # fan_in 8, fan_out 6 per member, rmax 3
    aparams = _random_aparams(st.adapter, st.params)
    k = 7  # configs: a size no other axis has
    cfgs = st.space.sample(jax.random.key(2), (k,))

    def loss(ap: Any) -> jax.Array:
        eff = st.apply_batched(st.params, ap, cfgs)
        return sum(jnp.sum(jnp.sin(x)) for x in jax.tree.leaves(eff))

    checked = 0
    jaxpr = jax.make_jaxpr(jax.grad(loss))(aparams).jaxpr
    for eqn in (e for e in equations(jaxpr) if e.primitive.name == "dot_general"):
        (_, _), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
        lhs, rhs = (v.aval.shape for v in eqn.invars)
        free = list(eqn.outvars[0].aval.shape[len(lhs_batch) :])
        if k in free:
            free.remove(k)
        if sum(d > 3 for d in free) < 2:  # a vector (C, its W0 product) or rank-sized result
            continue
        checked += 1
        assert k in [lhs[d] for d in lhs_batch] and k in [rhs[d] for d in rhs_batch], (
            f"config axis not a batch axis of both operands: {lhs} x {rhs} -> "
            f"{eqn.outvars[0].aval.shape}"
        )
    assert checked >= 4, "expected the A and B products and their gradients"


def test_jit_traces_once_for_different_cfgs():
    params, kw, _ = _kind("stacked")
    adapter = glora_jax.glora((3, 2), **kw)
    space = space_of(adapter, params)
    aparams = _random_aparams(adapter, params)
    traces = []

    @jax.jit
    def loss(ap, cfg):
        traces.append(1)
        return jnp.sum(adapter.apply(params, ap, cfg)["fc"]["kernel"] ** 2)

    values = [float(loss(aparams, space.sample(jax.random.key(i)))) for i in range(5)]
    values.append(float(loss(aparams, space.fixed(glora_jax.presets.ssf()))))
    assert len(traces) == 1
    assert len(set(values)) == len(values)


def _expected_grad_support(leaf: str, tensor: str, option: str, shape) -> np.ndarray:
    """Which entries of a support leaf the chosen option of ``tensor`` reads."""
    mask = np.zeros(shape, bool)
    if leaf[0] != tensor.lower() or option == "none":
        return mask
    r = int(option.split("_")[1]) if option.startswith("lora_") else 0
    if leaf in ("a_in", "b_in", "c_in") and r:
        mask[:, :r] = True
    elif leaf in ("a_out", "b_out", "c_out") and r:
        mask[:r, :] = True
    elif option == "vector":
        if leaf in ("a_out", "b_out"):
            mask[0, :] = True
        elif leaf == "c_in":
            mask[:, 0] = True
        elif leaf in ("d", "e"):
            mask[:] = True
    elif option == "scalar" and leaf in ("a_out", "b_out", "d", "e"):
        mask[(0,) * len(shape)] = True
    return mask


def test_grads_reach_only_the_selected_option():
    st = _setup("dense", (3, 2))
    aparams = _random_aparams(st.adapter, st.params)
    probe = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size).reshape(p.shape) + 1.0), st.params)

    def loss(ap, cfg):
        eff = st.adapter.apply(st.params, ap, cfg)
        return sum(jax.tree.leaves(jax.tree.map(lambda e, w: jnp.sum(e * w), eff, probe)))

    grad = jax.jit(jax.grad(loss))
    for tensor in TENSORS:
        for option in st.space.options[tensor]:
            choice = {u: (option if u == tensor else "none") for u in TENSORS}
            g = grad(aparams, st.space.fixed(choice))["fc"]
            for leaf, value in g.items():
                want = _expected_grad_support(leaf, tensor, option, value.shape)
                np.testing.assert_array_equal(
                    np.asarray(value) != 0, want, err_msg=f"{tensor}={option}: {leaf}"
                )


# ---- defaults against the project's ViT --------------------------------------------------------


@pytest.mark.parametrize("scan", [False, True])
def test_vit_defaults_fuse_qkv_and_cover_four_layers_per_block(scan):
    cfg = ViTConfig(
        width=16, depth=2, mlp_dim=32, num_heads=2, patch_size=4, num_classes=3, scan=scan
    )
    params = jax.eval_shape(ViT(cfg).init, jax.random.key(0), jnp.zeros((1, 8, 8, 3)))["params"]
    adapter = glora_jax.glora((4, 2), stacked=SCANNED if scan else None)
    space = space_of(adapter, params)
    blocks = (
        ["Transformer/encoderblock"]
        if scan
        else [f"Transformer/encoderblock_{i}" for i in range(2)]
    )
    expected = {
        f"{b}/{m}": f
        for b in blocks
        for m, f in (
            ("MlpBlock_0/Dense_0", (16, 32)),
            ("MlpBlock_0/Dense_1", (32, 16)),
            ("MultiHeadDotProductAttention_0/out", (16, 16)),
            ("MultiHeadDotProductAttention_0/qkv", (16, 48)),
        )
    }
    assert {s.name: (s.fan_in, s.fan_out) for s in space.specs} == expected
    assert all(s.stack_shape == ((2,) if scan else ()) for s in space.specs)
    assert space.num_genes == 8


# ---- bad input -------------------------------------------------------------------------------


def _bad_inputs() -> list[tuple[str, Callable[[], Any], str]]:
    dense, kw, _ = _kind("dense")
    nobias, kw_nb, _ = _kind("no_bias")
    ad = glora_jax.glora((3, 2), **kw)
    space = space_of(ad, dense)
    ap = ad.init(jax.random.key(0), dense)
    good = space.sample(jax.random.key(1))
    nb = glora_jax.glora((3,), **kw_nb)
    ap_nb = nb.init(jax.random.key(0), nobias)
    bad_nb = {"fc": np.array([0, 0, 1, 0, 0], np.int32)}  # C = vector on a no-bias layer
    qkv, _, _ = _kind("qkv")
    qkv_flat = flatten(qkv)
    qkv_flat["blk/MultiHeadDotProductAttention_0/value/kernel"] = jnp.zeros((4, 2, 3))
    qkv_flat["blk/MultiHeadDotProductAttention_0/value/bias"] = jnp.zeros((2, 3))
    mixed = unflatten(qkv_flat)
    return [
        (
            "rank_too_big",
            lambda: glora_jax.glora((6,), **kw).init(jax.random.key(0), dense),
            "exceeds min",
        ),
        ("rank_zero", lambda: glora_jax.glora((0,)), r"positive ints, got \(0,\)"),
        ("ranks_repeated", lambda: glora_jax.glora((2, 2)), "distinct"),
        (
            "no_match",
            lambda: space_of(glora_jax.glora(targets=r"nothing/kernel"), dense),
            "matches no param",
        ),
        ("no_cfg", lambda: ad.apply(dense, ap), "needs a cfg"),
        ("cfg_missing_layer", lambda: ad.apply(dense, ap, {}), r"missing: \['fc'\]; unknown: \[\]"),
        (
            "cfg_extra_layer",
            lambda: ad.apply(dense, ap, {**good, "x": good["fc"]}),
            r"missing: \[\]; unknown: \['x'\]",
        ),
        (
            "cfg_wrong_shape",
            lambda: ad.apply(dense, ap, {"fc": good["fc"][:4]}),
            r"cfg\['fc'\] has shape \(4,\); expected",
        ),
        ("cfg_float", lambda: ad.apply(dense, ap, {"fc": good["fc"] * 1.0}), "int array"),
        (
            "cfg_batched",
            lambda: ad.apply(dense, ap, space.sample(jax.random.key(0), (2,))),
            "one subnet",
        ),
        (
            "cfg_out_of_range",
            lambda: ad.apply(dense, ap, {"fc": good["fc"].at[0].set(9)}),
            "out of range",
        ),
        (
            "aparams_wrong_shape",
            lambda: ad.apply(dense, {"fc": {**ap["fc"], "d": jnp.zeros(4)}}, good),
            "mis-shaped",
        ),
        ("aparams_missing", lambda: ad.apply(dense, {}, good), "missing: fc/a_in, fc/a_out"),
        ("illegal_option_no_bias", lambda: nb.apply(nobias, ap_nb, bad_nb), "without a bias"),
        (
            "fuse_mismatch",
            lambda: space_of(glora_jax.glora(targets=r".*/kernel"), mixed),
            "cannot fuse",
        ),
        (
            "fuse_bad_regex",
            lambda: space_of(glora_jax.glora(targets=r".*/kernel", fuse=[("(", "x")]), qkv),
            "invalid fuse pattern",
        ),
    ]


@pytest.mark.parametrize("index", [-1, -5, 5, 99])
def test_traced_out_of_range_index_reads_as_none(index: int) -> None:
    """Under jit a cfg's values cannot be checked: an index outside [0, n) reads as "none" in
    apply and num_params alike (a negative one wrapped around to lora_r)."""
    params, kw, _ = _kind("dense")
    adapter = glora_jax.glora((3, 2), **kw)
    space = space_of(adapter, params)
    aparams = _random_aparams(adapter, params)
    none = space.encode({"fc": dict.fromkeys("ABCDE", "none")})
    odd = {"fc": np.full(5, index, np.int32)}
    apply, count = jax.jit(adapter.apply), jax.jit(space.num_params)
    chex.assert_trees_all_equal(apply(params, aparams, odd), apply(params, aparams, none))
    chex.assert_trees_all_equal(apply(params, aparams, none), params)
    assert int(count(odd)) == int(count(none)) == 0


@pytest.mark.parametrize("index", [2**32, 2**32 + 1, -(2**32)])
def test_traced_int64_index_past_int32_reads_as_none(index: int) -> None:
    """With x64 on, an int64 index that an index lookup would wrap modulo 2**32 onto a LoRA
    option still reads as none, as num_params counts it."""
    params, kw, _ = _kind("dense")
    adapter = glora_jax.glora((3, 2), **kw)
    space = space_of(adapter, params)
    aparams = _random_aparams(adapter, params)
    with jax.enable_x64(True):
        odd = {"fc": np.full(5, index, np.int64)}
        none = {
            "fc": np.asarray(space.encode({"fc": dict.fromkeys("ABCDE", "none")})["fc"], np.int64)
        }
        apply = jax.jit(adapter.apply)
        chex.assert_trees_all_equal(apply(params, aparams, odd), apply(params, aparams, none))
        assert int(jax.jit(space.num_params)(odd)) == 0


def test_update_dtype_gives_a_subnet_one_dtype_concrete_or_traced() -> None:
    """A kernel whose A, B and C are all none is left out of the update when the cfg is known
    at trace time; with update_dtype it still comes back in that dtype, as under a traced cfg."""
    params, kw, _ = _kind("dense")
    adapter = glora_jax.glora((3, 2), update_dtype=jnp.bfloat16, **kw)
    space = space_of(adapter, params)
    aparams = _random_aparams(adapter, params)
    cfg = space.encode({"fc": {**dict.fromkeys("ABCE", "none"), "D": "vector"}})
    concrete = adapter.apply(params, aparams, cfg)
    traced = jax.jit(adapter.apply)(params, aparams, cfg)
    chex.assert_trees_all_equal_dtypes(concrete, traced)
    chex.assert_trees_all_equal(concrete, traced)
    assert concrete["fc"]["kernel"].dtype == jnp.bfloat16


@pytest.mark.parametrize("case", _bad_inputs(), ids=lambda c: c[0])
def test_bad_input_raises(case):
    _, fn, match = case
    with pytest.raises(ValueError, match=match):
        fn()


def test_fuse_none_keeps_kernels_apart_and_default_matches_vit_layout():
    params, _, _ = _kind("qkv")
    names = space_of(glora_jax.glora((3,), targets=r".*/kernel", fuse=None), params).layers
    assert names == tuple(
        f"blk/MultiHeadDotProductAttention_0/{n}" for n in ("key", "query", "value")
    )
    fused = space_of(glora_jax.glora((3,), targets=r".*/kernel", fuse=QKV_FUSE), params)
    assert fused.layers == ("blk/MultiHeadDotProductAttention_0/qkv",)
    assert [(s.fan_in, s.fan_out) for s in fused.specs] == [(8, 18)]


def test_layer_order_does_not_depend_on_dict_order():
    rng = np.random.default_rng(0)
    blocks = {f"b{i}": {"kernel": _leaf(rng, 4, 4), "bias": _leaf(rng, 4)} for i in (10, 2, 1)}
    space = space_of(glora_jax.glora((2,), targets=r"b\d+/kernel"), blocks)
    assert space.layers == ("b1", "b2", "b10")
    reordered = dict(sorted(blocks.items()))
    assert space_of(glora_jax.glora((2,), targets=r"b\d+/kernel"), reordered).layers == space.layers


def test_nested_and_slash_keyed_aparams_apply_alike():
    st = _setup("qkv", (3, 2))
    nested = _random_aparams(st.adapter, st.params)  # init's layout: mirrors the params
    assert set(nested) == {"blk"}
    slash_keyed: dict[str, dict] = {}  # {layer name: {leaf: array}}, as other tools may key it
    for path, leaf in flatten(nested).items():
        layer, name = path.rsplit("/", 1)
        slash_keyed.setdefault(layer, {})[name] = leaf
    apply = jax.jit(st.adapter.apply)
    cfg = _row(st.cfgs, 0)
    chex.assert_trees_all_equal(apply(st.params, slash_keyed, cfg), apply(st.params, nested, cfg))


def _two_dense_params() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        f"layer_{i}": {"kernel": jnp.asarray(rng.normal(size=(6, 5))), "bias": jnp.zeros(5)}
        for i in range(2)
    }


def test_combine_finds_glora_targets_whatever_a_draw_would_choose(monkeypatch):
    params = _two_dense_params()
    gl = glora_jax.glora((2,), targets=r"layer_\d/kernel", fuse=None)
    all_none = {t: "none" for t in "ABCDE"}
    # a draw of A = B = none leaves the kernel as it is, yet the layer is GLoRA's target
    monkeypatch.setattr(GLoRASpace, "sample", lambda self, rng, shape=(): self.fixed(all_none))
    lora = peft_core.lora(2, targets=r"layer_1/kernel")
    with pytest.raises(ValueError, match="adapters 0 and 1 both target 'layer_1/kernel'"):
        peft_core.combine(gl, lora).init(jax.random.key(0), params)


def test_nested_combine_with_a_space_samples_and_refuses_overlaps():
    params = _two_dense_params()
    gl = glora_jax.glora((2,), targets=r"layer_0/kernel", fuse=None)
    inner = peft_core.combine(gl, peft_core.lora(2, targets=r"layer_1/kernel"))
    outer = peft_core.combine(inner, peft_core.full(targets=r"layer_1/bias"))  # GLoRA: 0/bias
    aparams = outer.init(jax.random.key(0), params)
    space = outer.space(params)
    cfg = space.sample(jax.random.key(1), (3,))
    (glora_cfg, lora_cfg), full_cfg = cfg
    assert lora_cfg is None and full_cfg is None
    chex.assert_trees_all_equal_shapes(glora_cfg, gl.space(params).sample(jax.random.key(1), (3,)))
    one = jax.tree.map(lambda c: c[0], cfg)
    eff = outer.apply(params, aparams, one)
    chex.assert_trees_all_close(eff["layer_1"]["kernel"], params["layer_1"]["kernel"])
    clash = peft_core.combine(inner, peft_core.lora(1, targets=r"layer_0/kernel"))
    with pytest.raises(ValueError, match="adapters 0 and 1 both target 'layer_0/kernel'"):
        clash.init(jax.random.key(0), params)


def test_glora_takes_one_rank_as_an_int_and_refuses_bad_options():
    params = {"fc1": {"kernel": jnp.ones((6, 5)), "bias": jnp.zeros(5)}}
    one = glora_jax.glora(4, targets="fc1/kernel", fuse=None).space(params)
    tupled = glora_jax.glora((4,), targets="fc1/kernel", fuse=None).space(params)
    assert (one.ranks, one.specs) == (tupled.ranks, tupled.specs) == ((4,), one.specs)
    # numpy ranks make the same space, down to the repr a search checkpoint's fingerprint hashes
    arrayed = glora_jax.glora(np.array([4]), targets="fc1/kernel", fuse=None).space(params)
    assert repr(arrayed) == repr(tupled)
    with pytest.raises(ValueError, match="GLoRA targets .* select no layers"):
        glora_jax.glora(4, targets=(), fuse=None).space(params)
    with pytest.raises(ValueError, match="GLoRA targets is None: give patterns"):
        glora_jax.glora(4, targets=None, fuse=None).space(params)
    with pytest.raises(ValueError, match="GLoRA dtype must be a floating dtype"):
        glora_jax.glora(4, dtype=jnp.int32)
    with pytest.raises(ValueError, match="GLoRA update_dtype 'bf16' is not a dtype"):
        glora_jax.glora(4, update_dtype="bf16")


def test_fuse_templates_that_break_are_refused():
    blocks = {
        f"b{i}": {n: {"kernel": jnp.ones((4, 4)), "bias": jnp.zeros(4)} for n in ("query", "key")}
        for i in range(2)
    }
    targets = r"b\d/(query|key)/kernel"
    with pytest.raises(ValueError, match=r"modules \['b0', 'b1'\]: fused kernels must be siblings"):
        glora_jax.glora(2, targets=targets, fuse=[(r".*/(query|key)/kernel", "qk")]).space(blocks)
    with pytest.raises(ValueError, match=r"invalid fuse template '\\\\2'"):
        glora_jax.glora(2, targets=targets, fuse=[(r"(.*)/(?:query|key)/kernel", r"\2")]).space(
            blocks
        )


@pytest.mark.parametrize(
    "fuse",
    [
        (r"(.*)/(query|key|value)/kernel", r"\1/qkv"),  # one pair, no tuple around it
        {r"(.*)/(query|key|value)/kernel": r"\1/qkv"},
        r"(.*)/(query|key|value)/kernel",
        [(r"(.*)/(query|key|value)/kernel", 1)],
    ],
)
def test_fuse_that_is_no_sequence_of_string_pairs_is_refused(fuse: Any) -> None:
    # was "too many values to unpack (expected 2)" from deep inside the layer search
    with pytest.raises(TypeError, match=r"fuse must be a sequence of \(kernel regex, layer-name"):
        glora_jax.glora(2, targets=r".*/kernel", fuse=fuse)


def test_fuse_pairs_from_a_generator_fuse_every_kernel() -> None:
    # a generator was read up by the first kernel: key fused alone, query and value not at all
    params, _, _ = _kind("qkv")
    pairs = (pair for pair in QKV_FUSE)
    fused = space_of(glora_jax.glora((3,), targets=r".*/kernel", fuse=pairs), params)
    assert fused.layers == ("blk/MultiHeadDotProductAttention_0/qkv",)


def test_kernels_that_differ_in_bias_presence_do_not_fuse():
    qkv, _, _ = _kind("qkv")
    flat = flatten(qkv)
    del flat["blk/MultiHeadDotProductAttention_0/value/bias"]  # same in_shape, no bias
    with pytest.raises(ValueError, match=r"cannot fuse .*value/kernel \(8, 2, 3\) \(bias: False\)"):
        space_of(glora_jax.glora(targets=r".*/kernel"), unflatten(flat))


def test_a_fuse_pattern_must_match_the_whole_kernel_path():
    params, _, _ = _kind("qkv")
    prefix_only = [(r"(.*)/(query|key|value)", r"\1/qkv")]  # matches no path whole
    space = space_of(glora_jax.glora((3,), targets=r".*/kernel", fuse=prefix_only), params)
    assert space.layers == tuple(
        f"blk/MultiHeadDotProductAttention_0/{n}" for n in ("key", "query", "value")
    )
