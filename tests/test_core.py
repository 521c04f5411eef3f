"""peft_core: target selection, layer discovery, LoRA, baselines, combine."""

from __future__ import annotations

import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxprs import equations

import flora_jax
import glora_jax
import peft_core
from peft_core import find_layers


def tree(**shapes: tuple[int, ...]) -> dict:
    """{'a/b/kernel': shape} -> nested dict of deterministic random arrays."""
    rng = np.random.default_rng(0)
    flat = {
        k.replace(".", "/"): jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()
    }
    return peft_core.unflatten(flat)


PARAMS = tree(
    **{
        "dense.kernel": (6, 5),
        "dense.bias": (5,),
        "q.kernel": (8, 2, 3),
        "q.bias": (2, 3),
        "out.kernel": (2, 3, 8),
        "out.bias": (8,),
        "conv.kernel": (3, 3, 4, 6),
        "conv.bias": (6,),
        "nobias.kernel": (4, 7),
        "scan.kernel": (3, 6, 5),
        "scan.bias": (3, 5),
        "norm.scale": (5,),
    }
)


@pytest.mark.parametrize(
    ("path", "stack", "fan_in", "fan_out", "bias"),
    [
        ("dense/kernel", (), 6, 5, "dense/bias"),
        ("q/kernel", (), 8, 6, "q/bias"),
        ("out/kernel", (), 6, 8, "out/bias"),
        ("conv/kernel", (), 36, 6, "conv/bias"),
        ("nobias/kernel", (), 4, 7, None),
        ("scan/kernel", (3,), 6, 5, "scan/bias"),
    ],
)
def test_find_layers_matrix_view(path, stack, fan_in, fan_out, bias):
    (layer,) = find_layers(PARAMS, path.replace("/", "\\/"), stacked=r"scan/.*")
    assert layer.kernel_path == path
    assert layer.stack_shape == stack
    assert (layer.fan_in, layer.fan_out) == (fan_in, fan_out)
    assert layer.bias_path == bias
    assert layer.kernel_shape == PARAMS[path.split("/")[0]]["kernel"].shape


def test_a_pattern_found_inside_paths_says_patterns_match_whole_paths():
    """`targets=("query",)` (a substring, as re.search would take it) matches no whole path:
    the error says patterns match whole paths and shows a path it occurs in."""
    with pytest.raises(ValueError, match="matches no param path") as err:
        find_layers(PARAMS, r"nobias")
    message = str(err.value)
    assert "whole path" in message and "re.fullmatch" in message
    assert "occurs inside 1 path, e.g. 'nobias/kernel'" in message
    with pytest.raises(ValueError, match="matches no param path") as err:
        find_layers(PARAMS, r".*/kernl")
    assert "occurs inside" not in str(err.value)


def test_flatten_orders_paths_as_jax_orders_a_dicts_leaves() -> None:
    """Sorted keys at each level (as jit's flattening), whatever the insertion order."""
    tree_ = {"b": {"y": 1, "x": 2}, "a": {"z": 3}, "a2": 4}
    flat = peft_core.flatten(tree_)
    assert list(flat) == ["a/z", "a2", "b/x", "b/y"]
    assert list(flat.values()) == jax.tree.leaves(tree_)


def test_an_exclude_pattern_must_match_a_whole_targeted_path() -> None:
    """'a/kernel' matches a path the targets leave out and begins a targeted one: it leaves
    nothing out, so it is refused; the message shows at most 12 of the targeted paths."""
    paths = ["a/kernel", "a/kernel_t", "b/bias"]
    with pytest.raises(ValueError, match="exclude pattern 'a/kernel' matches none of the 1 "):
        peft_core.paths.select(paths, r"a/kernel_t", exclude=r"a/kernel")
    for n, tail in [(12, "  p11"), (13, "  p11\n  ...")]:
        many = [f"p{i:02d}" for i in range(n)] + ["q"]
        with pytest.raises(ValueError, match=f"(?s)look like:\\n  p00\\n.*{tail}$") as refused:
            peft_core.paths.select(many, r"p.*", exclude="q")
        assert str(refused.value).count("\n  p") == 12


def test_find_layers_errors():
    with pytest.raises(ValueError, match="matches no param path"):
        find_layers(PARAMS, r".*/kernl")
    with pytest.raises(ValueError, match="at least 2 dims"):
        find_layers(PARAMS, r"norm/scale")
    with pytest.raises(ValueError, match="invalid target pattern"):
        find_layers(PARAMS, r"(")
    bad = tree(**{"x.kernel": (4, 5), "x.bias": (4,)})
    with pytest.raises(ValueError, match="does not end with its bias shape"):
        find_layers(bad, r"x/kernel")
    scanned = tree(**{"blocks.kernel": (3, 4, 5), "blocks.bias": (3, 5)})  # stacked= forgotten
    with pytest.raises(ValueError, match=r"bias shape \(3, 5\) \(a stack of .* stacked=\)"):
        find_layers(scanned, r"blocks/kernel")
    assert find_layers(scanned, r"blocks/kernel", stacked=r"blocks/.*")[0].stack_shape == (3,)
    # a typo in exclude would adapt what it meant to leave out; in stacked, read the scan axis
    # as a fan_in axis (one update shared by every scanned layer)
    with pytest.raises(ValueError, match="exclude pattern 'haed/.*' matches no param path"):
        find_layers(PARAMS, r".*/kernel", exclude=r"haed/.*")
    # nor one that matches param paths the targets do not (it left nothing out, silently)
    with pytest.raises(
        ValueError, match=r"exclude pattern '.\*/bias' matches none of the 6 paths the targets"
    ):
        find_layers(PARAMS, r".*/kernel", exclude=(r"q/.*", r".*/bias"))
    with pytest.raises(ValueError, match="stacked pattern '.*/scan/.*' matches no param path"):
        find_layers(PARAMS, r"scan/kernel", stacked=r".*/scan/.*")
    two = tree(**{"glu.wi_0": (4, 5), "glu.wi_1": (4, 5)})
    with pytest.raises(ValueError, match="two leaves of module 'glu'"):
        find_layers(two, r"glu/.*")
    # 4 scanned layers of width 4 -> 5 read as one layer 4 -> (4, 5) too: stacked= or out_axes=
    # says which
    both = tree(**{"blocks.kernel": (4, 4, 5), "blocks.bias": (4, 5)})
    with pytest.raises(
        ValueError,
        match=r"reads two ways: one layer \(4,\) -> \(4, 5\), or a stack of 4 "
        r"layers \(4,\) -> \(5,\) \(nn.scan's\)",
    ):
        find_layers(both, r"blocks/kernel")
    assert find_layers(both, r"blocks/kernel", stacked=r"blocks/.*")[0].stack_shape == (4,)
    assert find_layers(both, r"blocks/kernel", out_axes={r"blocks/kernel": 2})[0].fan_out == 20
    with pytest.raises(TypeError, match=r"'blocks' has key 0 of type int: give a list of layers"):
        find_layers({"blocks": {0: PARAMS["q"]}}, r".*kernel")


BIASLESS_QKV = tree(**{"att.query.kernel": (8, 2, 3), "att.key.kernel": (8, 2, 3)})


def test_out_axes_reads_a_biasless_dense_general_as_such():
    # without a bias a 3-D kernel reads as a conv's, last axis out, unless its module is an
    # attention projection's (query, key, value): (D, H, Dh) -> out (H, Dh), as with a bias
    renamed = {"att": {"q": BIASLESS_QKV["att"]["query"], "key": BIASLESS_QKV["att"]["key"]}}
    found = find_layers(renamed, r".*kernel")
    shapes = {x.name: (x.in_shape, x.out_shape) for x in found}
    assert shapes == {"att/q": ((8, 2), (3,)), "att/key": ((8,), (2, 3))}
    found = find_layers(BIASLESS_QKV, r".*kernel", out_axes={r".*/query/kernel": 1})
    shapes = {x.name: (x.in_shape, x.out_shape) for x in found}
    assert shapes == {"att/query": ((8, 2), (3,)), "att/key": ((8,), (2, 3))}
    # where a bias says it, out_axes must agree
    assert find_layers(PARAMS, r"q/kernel", out_axes={r"q/kernel": 2})[0].fan_out == 6


@pytest.mark.parametrize(
    ("out_axes", "match"),
    [
        ({r".*/value/kernel": 2}, "out_axes pattern .* matches no param path"),
        ({r".*/query/kernel": 3}, "3 output axes of its 3 .* none is left for in_shape"),
        ({r".*/query/kernel": 0}, r"must be an int >= 1, got 0"),
        ({r".*/query/kernel": 2, r"att/.*": 1}, "both 2 and 1 output axes"),
    ],
)
def test_out_axes_errors(out_axes, match):
    with pytest.raises(ValueError, match=match):
        find_layers(BIASLESS_QKV, r".*kernel", out_axes=out_axes)


def test_out_axes_against_a_bias_is_an_error():
    with pytest.raises(ValueError, match=r"its bias 'q/bias' has 2 \(2, 3\)"):
        find_layers(PARAMS, r"q/kernel", out_axes={r"q/kernel": 1})


def test_lora_with_out_axes_factors_the_projection():
    """LoRA of a bias-less q (D, H, Dh) with out_axes=2: W + A B on the (D, H·Dh) matrix."""
    ad = peft_core.lora(2, targets=r".*/query/kernel", out_axes={r".*/query/kernel": 2})
    ap = ad.init(jax.random.key(0), BIASLESS_QKV)
    chex.assert_shape([ap["att"]["query"]["a"], ap["att"]["query"]["b"]], [(8, 2), (2, 6)])
    rng = np.random.default_rng(3)
    ap = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), ap)
    w = np.asarray(BIASLESS_QKV["att"]["query"]["kernel"])
    a, b = np.asarray(ap["att"]["query"]["a"]), np.asarray(ap["att"]["query"]["b"])
    expected = (w.reshape(8, 6) + a @ b).reshape(w.shape)  # scale alpha / rank = 1
    got = ad.apply(BIASLESS_QKV, ap)["att"]["query"]["kernel"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["lora", "flora", "glora"])
def test_adapters_pass_out_axes_on(method):
    """Each adapter sees the bias-less q/k kernels (8, 2, 3) as (8, 6) matrices with out_axes."""
    out_axes = {r".*/(query|key)/kernel": 2}
    if method == "lora":
        ap = peft_core.lora(2, out_axes=out_axes, targets=r".*kernel").init(
            jax.random.key(0), BIASLESS_QKV
        )
        chex.assert_shape(ap["att"]["key"]["b"], (2, 6))
    elif method == "flora":
        ad = flora_jax.flora(2, tucker="matrix", out_axes=out_axes, targets=r".*kernel")
        ap = ad.init(jax.random.key(0), BIASLESS_QKV)
        chex.assert_shape([ap["att/key"]["u0"], ap["att/key"]["u1"]], [(8, 2), (6, 2)])
    else:
        space = glora_jax.glora(2, out_axes=out_axes, targets=r".*kernel").space(BIASLESS_QKV)
        assert [(x.name, x.fan_in, x.fan_out) for x in space.specs] == [
            ("att/key", 8, 6),
            ("att/query", 8, 6),
        ]


def test_select_exclude_and_order():
    paths = ["a/kernel", "b/kernel", "head/kernel"]
    assert peft_core.select(paths, r".*kernel", exclude=r"head/.*") == ["a/kernel", "b/kernel"]


def test_patterns_match_whole_paths():
    """A pattern is anchored at both ends: neither a longer path nor an alternative's prefix
    is adapted."""
    assert peft_core.paths.matches("fc/kernel", r"fc/kernel")
    assert not peft_core.paths.matches("fc/kernel_extra", r"fc/kernel")
    assert not peft_core.paths.matches("block/fc/kernel", r"fc/kernel")
    assert peft_core.select(["a/kernel", "b/kernel"], r"a/kernel|b") == ["a/kernel"]
    paths = ["a/kernel", "ab/kernel"]
    assert peft_core.select(paths, r".*/kernel", exclude=r"a/kernel|x") == ["ab/kernel"]


@pytest.mark.parametrize("stack", [(), (4,)])
def test_lora_init_is_kaiming_uniform_a_and_zero_b(stack):
    """As HF PEFT: A ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform_, a=sqrt(5)), B = 0."""
    fan_in, fan_out, rank = 2000, 300, 4
    params = {"fc": {"kernel": jnp.zeros((*stack, fan_in, fan_out))}}
    adapter = peft_core.lora(rank, targets=r"fc/kernel", stacked=r"fc/.*" if stack else None)
    aparams = adapter.init(jax.random.key(0), params)
    a, b = np.asarray(aparams["fc"]["a"]), np.asarray(aparams["fc"]["b"])
    chex.assert_shape([a, b], [(*stack, fan_in, rank), (*stack, rank, fan_out)])
    assert not b.any()
    bound = fan_in**-0.5
    assert np.abs(a).max() <= bound and np.abs(a).max() > 0.99 * bound
    np.testing.assert_allclose(a.std(), bound / 3**0.5, rtol=0.05)


@pytest.mark.parametrize(
    "adapter",
    [peft_core.lora(2, targets=r".*kernel"), flora_jax.flora(2, targets=r".*kernel")],
    ids=["lora", "flora"],
)
def test_init_draws_each_layer_the_same_in_any_key_order_and_under_jit(adapter):
    """Each layer's draw came from its place in the dict's insertion order, which jit does not
    keep (it sorts keys): the same key gave eager and jitted init, or two builds of one tree,
    other initial factors."""
    shapes = {"dense": (6, 5), "conv": (3, 3, 2, 7), "b": (4, 3)}  # not in sorted order
    params = {"blk": {k: {"kernel": jnp.ones(shape)} for k, shape in shapes.items()}}
    backwards = {"blk": {k: params["blk"][k] for k in reversed(shapes)}}
    key = jax.random.key(3)
    eager = adapter.init(key, params)
    chex.assert_trees_all_equal(adapter.init(key, backwards), eager)
    # under jit up to float rounding: XLA's GPU fusion of U(-b, b)'s scaling differs by an ulp
    chex.assert_trees_all_close(jax.jit(adapter.init)(key, params), eager, rtol=1e-6, atol=1e-7)


def np_lora(w, a, b, scale):
    """Reference: W + scale * A B on the (fan_in, fan_out) view."""
    return w + scale * (a.reshape(a.shape[0], -1) @ b).reshape(w.shape)


@pytest.mark.parametrize("rank", [1, 2, 4])
@pytest.mark.parametrize("alpha", [None, 8.0])
def test_lora_matches_numpy(rank, alpha):
    targets = (r"dense/kernel", r"q/kernel", r"out/kernel", r"conv/kernel")
    ad = peft_core.lora(rank, alpha=alpha, targets=targets)
    ap = ad.init(jax.random.key(1), PARAMS)
    chex.assert_trees_all_equal(ad.apply(PARAMS, ap), PARAMS)  # B = 0: identity at init
    rng = np.random.default_rng(2)
    ap = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), ap)
    scale = (alpha or rank) / rank
    for eff in (ad.apply(PARAMS, ap), ad.merge(PARAMS, ap)):
        for name in ("dense", "q", "out", "conv"):
            w = np.asarray(PARAMS[name]["kernel"])
            a, b = np.asarray(ap[name]["a"]), np.asarray(ap[name]["b"])
            chex.assert_shape(a, (w.size // b.shape[1], rank))
            expected = w + scale * (a @ b).reshape(w.shape)
            np.testing.assert_allclose(eff[name]["kernel"], expected, rtol=1e-5, atol=1e-5)
            chex.assert_trees_all_equal(eff[name]["bias"], PARAMS[name]["bias"])


def test_group_by_keeps_first_appearance_order():
    words = ["bb", "a", "cc", "d", "eee"]
    assert peft_core.adapter.group_by(words, len) == [["bb", "cc"], ["a", "d"], ["eee"]]
    assert peft_core.adapter.group_by([], len) == []


def test_over_layers_equals_one_call_per_layer():
    rng = np.random.default_rng(5)
    args = [
        (jnp.asarray(rng.normal(size=(2, 4, 3))), None, {"v": jnp.asarray(rng.normal(size=(2, 3)))})
        for _ in range(3)
    ]

    def fn(w, nothing, d):
        assert nothing is None
        return w @ d["v"], None

    got = peft_core.adapter.over_layers(fn, args, [1] * len(args))  # one stack axis of 2 each
    for (w, _, d), (out, none) in zip(args, got, strict=True):
        assert none is None
        want = np.einsum("sij,sj->si", np.asarray(w), np.asarray(d["v"]))
        np.testing.assert_allclose(out, want, rtol=1e-6)


@pytest.mark.parametrize("num_layers", [2, 5])
def test_over_layers_gradient_concatenates_the_layers_cotangents(num_layers):
    """The layers' cotangents meet in ONE concatenate per output leaf, not as zero-pads of each
    to the whole stack summed up (what x[j] per layer gives: L pads + L-1 adds per element,
    14-31% of the HBM bandwidth on an H200, docs/benchmarks.md); gradients equal per layer."""
    rng = np.random.default_rng(6)
    ws = [jnp.asarray(rng.normal(size=(4, 3)), jnp.float32) for _ in range(num_layers)]
    v = jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)

    def loss(v, fn_layers):
        outs = fn_layers(lambda w, v: (jnp.tanh(w @ v), w.sum() * v), [(w, v) for w in ws])
        return sum(jnp.sum(jnp.sin(a) * (i + 1)) + jnp.sum(b) for i, (a, b) in enumerate(outs))

    def batched(fn, args):
        return peft_core.adapter.over_layers(fn, args, [0] * len(args))

    def per_layer(fn, args):
        return [fn(*a) for a in args]

    jaxpr = jax.make_jaxpr(jax.grad(lambda v: loss(v, batched)))(v).jaxpr
    prims = [eqn.primitive.name for eqn in equations(jaxpr)]
    assert "pad" not in prims
    assert prims.count("concatenate") == 2  # one per output leaf
    np.testing.assert_allclose(
        jax.grad(lambda v: loss(v, batched))(v),
        jax.grad(lambda v: loss(v, per_layer))(v),
        rtol=1e-5,
        atol=1e-6,
    )


def test_lora_same_shaped_layers_batched_match_numpy():
    params = tree(**{f"l{i}.kernel": (6, 5) for i in range(3)}, **{"odd.kernel": (5, 6)})
    ad = peft_core.lora(2, targets=r".*/kernel")
    rng = np.random.default_rng(3)
    ap = jax.tree.map(
        lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32),
        ad.init(jax.random.key(0), params),
    )
    eff = ad.apply(params, ap)
    for name in ("l0", "l1", "l2", "odd"):
        want = np.asarray(params[name]["kernel"]) + np.asarray(ap[name]["a"]) @ np.asarray(
            ap[name]["b"]
        )
        np.testing.assert_allclose(eff[name]["kernel"], want, rtol=1e-5, atol=1e-5)


def test_lora_stacked_is_per_slice():
    ad = peft_core.lora(2, targets=r"scan/kernel", stacked=r"scan/.*")
    ap = ad.init(jax.random.key(0), PARAMS)
    chex.assert_shape(ap["scan"]["a"], (3, 6, 2))
    ap = jax.tree.map(lambda x: x + 1.0, ap)
    eff = ad.apply(PARAMS, ap)["scan"]["kernel"]
    for i in range(3):
        w = np.asarray(PARAMS["scan"]["kernel"][i])
        ref = w + np.asarray(ap["scan"]["a"][i]) @ np.asarray(ap["scan"]["b"][i])
        np.testing.assert_allclose(eff[i], ref, rtol=1e-5)


def test_lora_errors_and_bf16():
    with pytest.raises(ValueError, match="exceeds min"):
        peft_core.lora(5, targets=r"nobias/kernel").init(jax.random.key(0), PARAMS)
    for rank in (0, 2.5, True):
        with pytest.raises(ValueError, match="rank must be an int >= 1"):
            peft_core.lora(rank)
    ad = peft_core.lora(2, targets=r"dense/kernel")
    ap = ad.init(jax.random.key(0), PARAMS)
    with pytest.raises(ValueError, match="mis-shaped"):
        ad.apply(PARAMS, {"dense": {"a": ap["dense"]["a"][:, :1], "b": ap["dense"]["b"]}})
    with pytest.raises(ValueError, match="missing"):
        ad.apply(PARAMS, {})
    with pytest.raises(ValueError, match="no search space"):
        ad.apply(PARAMS, ap, {"dense": 1})
    p16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), PARAMS)
    assert ad.apply(p16, ap)["dense"]["kernel"].dtype == jnp.bfloat16


def assert_rounded_once(got: jax.Array, ref: np.ndarray, *, delta_scale: float) -> None:
    """``got`` is float64 ``ref`` (W0 + ΔW) rounded once to ``got``'s dtype: within half a step
    of that dtype (bf16, f16; 1/256 of a step spare for the f32 the sum is formed in); an f32
    ``got`` within f32 rounding of ``ref`` and of ΔW (largest entry ``delta_scale``)."""
    got64 = np.asarray(got, np.float64)
    err = np.abs(got64 - ref)
    if got.dtype == jnp.float32:
        np.testing.assert_allclose(got64, ref, rtol=2**-23, atol=2**-20 * delta_scale)
        return
    info = jnp.finfo(got.dtype)
    exponent = np.maximum(np.floor(np.log2(np.maximum(np.abs(ref), 1e-300))), info.minexp)
    bound = 0.5 * 2.0 ** (exponent - info.nmant) * (1 + 2**-8)
    worse = err > bound
    assert not worse.any(), (
        f"{int(worse.sum())} of {err.size} entries off by more than one rounding to "
        f"{got.dtype}: worst {float((err / bound).max()):.3f} of the bound"
    )


@pytest.mark.parametrize("factor_dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
@pytest.mark.parametrize("param_dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_lora_update_is_formed_in_f32_and_rounded_once(param_dtype, factor_dtype):
    # W0 + (alpha / r) A B against float64 numpy: apply, merge and the train view's kernel
    # round the sum once to the param's dtype, whatever the factors' dtype (half-precision
    # factors' product must not be rounded to their dtype before it meets W0)
    rng = np.random.default_rng(0)
    w0 = jnp.asarray(rng.normal(size=(64, 48)), param_dtype)
    params = {"dense": {"kernel": w0}}
    adapter = peft_core.lora(
        6, alpha=10.0, targets="dense/kernel", dtype=factor_dtype, grads="activation"
    )
    assert adapter.train is not None
    aparams = adapter.init(jax.random.key(0), params)
    aparams["dense"]["b"] = jnp.asarray(0.05 * rng.normal(size=(6, 48)), factor_dtype)
    a, b = (np.asarray(aparams["dense"][k], np.float64) for k in ("a", "b"))
    delta = (10.0 / 6) * a @ b
    ref = np.asarray(w0, np.float64) + delta
    for eff in (
        adapter.apply(params, aparams),
        adapter.merge(params, aparams),
        adapter.train.apply(params, aparams),
    ):
        kernel = eff["dense"]["kernel"]
        assert kernel.dtype == param_dtype
        assert_rounded_once(kernel, ref, delta_scale=float(np.abs(delta).max()))


class TinyNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(8, name="fc1")(x))
        return nn.Dense(3, name="head")(x)


def test_lora_grad_only_into_adapter_and_merged_logits():
    model = TinyNet()
    x = jax.random.normal(jax.random.key(0), (4, 5))
    params = model.init(jax.random.key(1), x)["params"]
    ad = peft_core.lora(2, targets=r"fc1/kernel")
    ap = jax.tree.map(lambda a: a + 0.1, ad.init(jax.random.key(2), params))

    def loss(ap):
        return jnp.sum(model.apply({"params": ad.apply(params, ap)}, x) ** 2)

    g = jax.grad(loss)(ap)
    assert set(peft_core.flatten(g)) == {"fc1/a", "fc1/b"}  # nothing else gets a gradient
    assert all(float(jnp.abs(v).sum()) > 0 for v in jax.tree.leaves(g))
    merged = ad.merge(params, ap)
    fc1, head = params["fc1"], params["head"]
    kernel = np.asarray(fc1["kernel"]) + np.asarray(ap["fc1"]["a"]) @ np.asarray(ap["fc1"]["b"])
    hidden = np.maximum(np.asarray(x) @ kernel + np.asarray(fc1["bias"]), 0.0)
    want = hidden @ np.asarray(head["kernel"]) + np.asarray(head["bias"])
    chex.assert_trees_all_close(model.apply({"params": merged}, x), want, rtol=1e-5, atol=1e-5)


def test_full_and_linear_probe():
    full = peft_core.full(exclude=r"norm/.*")
    ap = full.init(jax.random.key(0), PARAMS)
    assert "norm" not in ap and ap["dense"]["kernel"].shape == (6, 5)
    chex.assert_trees_all_equal(full.apply(PARAMS, ap), PARAMS)
    ap = jax.tree.map(lambda x: x + 2.0, ap)
    eff = full.apply(PARAMS, ap)
    np.testing.assert_allclose(eff["q"]["bias"], np.asarray(PARAMS["q"]["bias"]) + 2.0)
    chex.assert_trees_all_equal(eff["norm"]["scale"], PARAMS["norm"]["scale"])
    with_ids = {**PARAMS, "ids": jnp.arange(4)}  # a delta would round away on ints
    with pytest.raises(ValueError, match=r"not float arrays.*\['ids \(int32\)'\]; leave them"):
        peft_core.full().init(jax.random.key(0), with_ids)
    assert "ids" not in peft_core.full(exclude="ids").init(jax.random.key(0), with_ids)
    fp8 = jnp.ones(3, jnp.float8_e4m3fn)
    for leaf, kind in [(3, "int"), (0.5, "float"), (fp8, "float8_e4m3fn")]:
        with pytest.raises(ValueError, match=rf"\['step \({kind}\)'\]; leave them"):
            peft_core.full().init(jax.random.key(0), {**PARAMS, "step": leaf})
    probe = peft_core.linear_probe()
    assert probe.init(jax.random.key(0), PARAMS) == {}
    assert probe.apply(PARAMS, {}) is PARAMS
    with pytest.raises(ValueError, match="takes no adapter params"):
        probe.apply(PARAMS, {"x": jnp.ones(1)})


@pytest.mark.parametrize(
    ("param_dtype", "delta_dtype"),
    [(jnp.bfloat16, jnp.float32), (jnp.float32, jnp.float32), (jnp.float64, jnp.float64)],
)
def test_full_delta_holds_the_params_precision(param_dtype, delta_dtype):
    with jax.enable_x64(True):
        params = {"w": jnp.full((3,), 1.0, param_dtype)}
        adapter = peft_core.full()
        delta = adapter.init(jax.random.key(0), params)
        assert delta["w"].dtype == delta_dtype
        step = jnp.asarray(1e-12, delta_dtype)  # below f32's resolution at 1.0
        merged = adapter.merge(params, {"w": delta["w"] + step})
        assert merged["w"].dtype == param_dtype
        if param_dtype == jnp.float64:
            np.testing.assert_array_equal(merged["w"], np.full(3, 1.0 + 1e-12))


def test_combine_disjoint_and_overlap():
    a = peft_core.lora(2, targets=r"dense/kernel")
    b = peft_core.lora(1, targets=r"nobias/kernel")
    both = peft_core.combine(a, b)
    ap = both.init(jax.random.key(0), PARAMS)
    ap = jax.tree.map(lambda x: x + 1.0, ap)
    eff = both.apply(PARAMS, ap)
    chex.assert_trees_all_close(eff["dense"], a.apply(PARAMS, ap[0])["dense"])
    chex.assert_trees_all_close(eff["nobias"], b.apply(PARAMS, ap[1])["nobias"])
    twice = peft_core.combine(a, peft_core.lora(1, targets=r"dense/kernel"))
    with pytest.raises(ValueError, match="both target 'dense/kernel'"):
        twice.init(jax.random.key(0), PARAMS)
    # aparams not made by its init (restored, or each adapter's own): W0 + dW1 + dW2 was returned
    separate = (ap[0], peft_core.lora(1, targets=r"dense/kernel").init(jax.random.key(1), PARAMS))
    for fn in (twice.apply, twice.merge):
        with pytest.raises(ValueError, match="adapters 0 and 1 both target 'dense/kernel'"):
            fn(PARAMS, separate)


def test_adapted_paths_are_the_leaves_each_adapter_rewrites():
    lora = peft_core.lora(2, targets=(r"dense/kernel", r"conv/kernel"))
    assert sorted(peft_core.adapted_paths(lora, PARAMS)) == ["conv/kernel", "dense/kernel"]
    full = peft_core.full(exclude=r"(dense|conv|nobias)/.*")
    kept = sorted(
        p for p in peft_core.flatten(PARAMS) if not p.startswith(("dense/", "conv/", "nobias/"))
    )
    assert len(kept) > 2 and sorted(peft_core.adapted_paths(full, PARAMS)) == kept
    assert peft_core.adapted_paths(peft_core.linear_probe(), PARAMS) == []
    glora = glora_jax.glora((2,), targets=r"dense/kernel")  # the kernel and its bias
    assert sorted(peft_core.adapted_paths(glora, PARAMS)) == ["dense/bias", "dense/kernel"]


def test_param_count():
    ad = peft_core.lora(2, targets=(r"dense/kernel", r"conv/kernel"))
    ap = ad.init(jax.random.key(0), PARAMS)
    assert peft_core.param_count(ap) == 2 * (6 + 5) + 2 * (36 + 6)


# ---- bad input a user may pass: a message that names the problem ----------------------------

_KEY = jax.random.key(0)
_DENSE = {"fc1": PARAMS["dense"], "fc2": PARAMS["nobias"]}


def _init_lora(**kwargs):
    return lambda: peft_core.lora(2, targets=r"fc\d/kernel", **kwargs).init(_KEY, _DENSE)


def _lora_on(layer):
    return peft_core.lora(2, targets=f"{layer}/kernel")


def _apply_combined(*layers, cfg=None):
    """combine() of LoRA on fc1 and on fc2 applied with the aparams of the LoRAs on ``layers``
    (one layer: its aparams alone, not in a tuple) and ``cfg``."""

    def apply():
        both = peft_core.combine(_lora_on("fc1"), _lora_on("fc2"))
        aparams = tuple(_lora_on(layer).init(_KEY, _DENSE) for layer in layers)
        return both.apply(_DENSE, aparams[0] if len(aparams) == 1 else aparams, cfg)

    return apply


class _Pair:
    """A pytree node whose key path entries are plain strings (no DictKey, GetAttrKey, ...)."""

    def __init__(self, a, b):
        self.a, self.b = a, b


jax.tree_util.register_pytree_with_keys(
    _Pair, lambda p: ((("a", p.a), ("b", p.b)), None), lambda _, children: _Pair(*children)
)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: peft_core.lora(2, targets=None).init(_KEY, _DENSE), ValueError, "targets is None"),
        (_init_lora(exclude=r".*"), ValueError, "leaves none of the kernels"),
        (
            lambda: peft_core.lora(2, targets="fc1/kernel").init(
                _KEY, {"fc1/kernel": PARAMS["dense"]["kernel"]}
            ),
            ValueError,
            "param key 'fc1/kernel' holds '/'",
        ),
        (
            lambda: peft_core.lora(2, targets="fc/kernel").init(
                _KEY, {"fc": {"kernel": jnp.ones((4, 5), jnp.int8)}}
            ),
            ValueError,
            "'fc/kernel' is int8: adapters train float kernels",
        ),
        (
            lambda: peft_core.lora(2, targets="fc/kernel").init(_KEY, {"fc": {"kernel": 0.5}}),
            ValueError,
            "target 'fc/kernel' is a Python float, not an array",
        ),
        (
            lambda: peft_core.lora(2, targets="fc/kernel").init(
                _KEY, {"fc": {"kernel": jnp.ones((4, 5), jnp.float8_e4m3fn)}}
            ),
            ValueError,
            "'fc/kernel' is float8_e4m3fn: adapters train float kernels of 16 bits or more",
        ),
        (lambda: peft_core.lora(2, alpha=0), ValueError, "alpha must be a finite non-zero number"),
        (lambda: peft_core.lora(2, alpha="8"), ValueError, r"number \(or None: rank\), got '8'"),
        (
            lambda: peft_core.full(targets=None).init(_KEY, _DENSE),
            ValueError,
            "target patterns are None",
        ),
        (
            lambda: peft_core.lora(2, alpha=float("nan")),
            ValueError,
            r"number \(or None: rank\), got nan",
        ),
        (
            lambda: peft_core.lora(2, alpha=float("-inf")),
            ValueError,
            r"number \(or None: rank\), got -inf",
        ),
        (lambda: peft_core.lora(2, dtype=jnp.int32), ValueError, "LoRA dtype must be a floating"),
        (
            lambda: peft_core.lora(2, dtype=jnp.float8_e5m2),
            ValueError,
            "LoRA dtype must be a floating dtype of 16 bits or more, got float8_e5m2",
        ),
        (
            lambda: peft_core.combine(peft_core.lora(2), peft_core.lora),
            TypeError,
            "argument 1 is a function",
        ),
        (
            lambda: peft_core.lora(2, targets=r"blk(/a)?/kernel").init(
                _KEY, {"blk": {"kernel": jnp.ones((4, 4)), "a": {"kernel": jnp.ones((4, 4))}}}
            ),
            ValueError,
            "LoRA keeps blk's tensors at 'blk/a', the path of targeted module 'blk/a'",
        ),
        (
            lambda: peft_core.lora(2, targets=r"blk(/a/inner)?/kernel").init(
                _KEY,
                {"blk": {"kernel": jnp.ones((4, 4)), "a": {"inner": {"kernel": jnp.ones((4, 4))}}}},
            ),
            ValueError,
            "tensors at 'blk/a', the path of targeted module 'blk/a/inner'",
        ),
        (
            lambda: glora_jax.glora(2, targets=r"blk(/d)?/kernel").init(
                _KEY,
                {
                    "blk": {
                        "kernel": jnp.ones((4, 4)),
                        "bias": jnp.zeros(4),
                        "d": {"kernel": jnp.ones((4, 4)), "bias": jnp.zeros(4)},
                    }
                },
            ),
            ValueError,
            "GLoRA keeps blk's tensors at 'blk/d', the path of targeted module 'blk/d'",
        ),
        (
            lambda: flora_jax.flora(2, targets=r"blk(/u0)?/kernel").init(
                _KEY, {"blk": {"kernel": jnp.ones((4, 4)), "u0": {"kernel": jnp.ones((4, 4))}}}
            ),
            ValueError,
            "FLoRA keeps blk's tensors at 'blk/u0', the path of targeted module 'blk/u0'",
        ),
        (
            lambda: peft_core.unflatten({"fc1/kernel/0": 1.0, "fc1/kernel": 2.0}),
            ValueError,
            "param paths 'fc1/kernel' and 'fc1/kernel/0' collide",
        ),
        (
            lambda: peft_core.unflatten({"fc1/kernel": 2.0, "fc1/kernel/0": 1.0}),
            ValueError,
            "param paths 'fc1/kernel' and 'fc1/kernel/0' collide",
        ),
        (
            lambda: peft_core.adapter.add_delta(jnp.ones((4, 1)), jnp.ones((4, 5))),
            ValueError,
            r"update of shape \(4, 5\) for a param of shape \(4, 1\)",
        ),
        (
            lambda: peft_core.adapter.replace_leaves(_DENSE, {"fc1/kernel": jnp.ones((2, 2))}),
            ValueError,
            r"keep each leaf's shape: \['fc1/kernel: \(6, 5\) -> \(2, 2\)'\]",
        ),
        (lambda: peft_core.paths.select("fc1/kernel", "f.*"), TypeError, "not one path string"),
        (
            lambda: peft_core.lora(2, targets=b"fc1/kernel").init(_KEY, _DENSE),
            TypeError,
            r"path patterns must be regex strings, got \[b'fc1/kernel'\]",
        ),
        (
            lambda: peft_core.lora(2, targets=["fc1/kernel", 3]).init(_KEY, _DENSE),
            TypeError,
            r"must be regex strings, got \[3\]",
        ),
        (  # a generator, read once, matched nothing after the check: nothing was adapted
            lambda: peft_core.lora(2, targets=(p for p in [r"fc\d/kernel"])).init(_KEY, _DENSE),
            TypeError,
            "path patterns must be a regex string or a sequence of them .* got generator",
        ),
        (  # ... and here nothing was left out
            lambda: peft_core.lora(2, targets=r"fc\d/kernel", exclude=iter(["fc2/kernel"])).init(
                _KEY, _DENSE
            ),
            TypeError,
            "got list_iterator",
        ),
        (
            lambda: peft_core.lora(2, targets=5).init(_KEY, _DENSE),
            TypeError,
            "path patterns must be a regex string or a sequence of them .* got int 5",
        ),
        (lambda: glora_jax.glora(8.0), ValueError, r"positive ints, got \(8.0,\)"),
        (lambda: glora_jax.glora("8"), ValueError, r"positive ints, got \('8',\)"),
        (lambda: peft_core.combine(), ValueError, r"combine\(\) needs at least one adapter"),
        (
            _apply_combined("fc1"),  # the first adapter's aparams, not a tuple
            ValueError,
            "combined aparams must be a tuple of 2 trees",
        ),
        (
            _apply_combined("fc1", "fc2", cfg=(None,)),
            ValueError,
            "combined cfg must be a tuple of 2 configs or None",
        ),
        (
            lambda: peft_core.replace_leaves(_DENSE, {"fc3/kernel": jnp.ones((6, 5))}),
            KeyError,
            r"no such param paths: \['fc3/kernel'\]",
        ),
        (
            lambda: peft_core.lora(2, targets="fc1/kernel").init(_KEY, [_DENSE]),
            TypeError,
            "expected a nested mapping of params, got list",
        ),
        (lambda: peft_core.get_leaf(_DENSE, "fc3/kernel"), KeyError, "no param at 'fc3/kernel'"),
        (
            lambda: peft_core.get_leaf(_DENSE, "fc1/kernel/0"),  # below a leaf
            KeyError,
            "no param at 'fc1/kernel/0'",
        ),
        (
            lambda: peft_core.check_tree(
                {"fc1": {"a": jnp.ones((6, 2)), "b": jnp.ones((2, 5))}},
                {"fc1": _Pair(jnp.ones((6, 2)), jnp.ones((3, 5)))},  # its paths: fc1/a, fc1/b
                what="LoRA params",
            ),
            ValueError,
            r"^LoRA params does not fit the params; mis-shaped: fc1/b: expected \(2, 5\), got "
            r"\(3, 5\)$",
        ),
    ],
)
def test_bad_adapter_input_names_the_problem(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_compiled_patterns_and_an_int_batch_shape_are_taken() -> None:
    fc1 = re.compile(r"fc1/kernel")
    assert list(peft_core.lora(2, targets=fc1).init(_KEY, _DENSE)) == ["fc1"]
    assert peft_core.paths.as_patterns([fc1, "x"]) == ("fc1/kernel", "x")
    space = glora_jax.glora(2, targets=fc1).space(_DENSE)
    chex.assert_shape(space.sample(_KEY, 3)["fc1"], (3, 5))
    chex.assert_trees_all_equal(space.sample(_KEY, 3), space.sample(_KEY, (3,)))


def test_a_compiled_patterns_flags_are_kept():
    """re.compile(..., re.I) gave its bare text: 'Dense_0' went unselected without a word."""
    paths = ["Dense_0/kernel", "dense_1/kernel", "head/kernel"]
    either = re.compile(r"dense_\d/kernel", re.IGNORECASE)
    assert peft_core.select(paths, either) == paths[:2]
    assert peft_core.paths.matches("Dense_0/kernel", [either])
    assert peft_core.select(paths, re.compile(r"(?i)DENSE_0/kernel")) == paths[:1]
    params = {"Dense_0": PARAMS["dense"], "dense_1": PARAMS["nobias"]}
    assert set(peft_core.lora(2, targets=either).init(_KEY, params)) == {"Dense_0", "dense_1"}


@pytest.mark.parametrize("grads", ["activation", "weight"])
def test_aparams_missing_or_not_floating_are_named_in_apply_and_train(grads):
    adapter = peft_core.lora(2, targets=r"fc\d/kernel", grads=grads)
    aparams = adapter.init(_KEY, _DENSE)
    applies = [adapter.apply] + ([adapter.train.apply] if adapter.train else [])
    for apply in applies:  # the train view read the factors first: a bare KeyError 'fc1/a'
        with pytest.raises(ValueError, match="missing: fc1/a, fc1/b"):
            apply(_DENSE, {"fc2": aparams["fc2"]})
        ints = jax.tree.map(lambda a: a.astype(jnp.int32), aparams)
        with pytest.raises(ValueError, match="not floating: fc1/a: int32"):
            apply(_DENSE, ints)


@pytest.mark.parametrize("bias", [(2, 5), (5,)])
def test_a_stacked_kernels_bias_must_share_its_stack_axis(bias):
    """3 scanned layers 4 -> 5 with a bias of 2 slices (or of none) is no scanned Dense: refused,
    not read as one with another module's bias."""
    params = tree(**{"blocks.kernel": (3, 4, 5), "blocks.bias": bias})
    with pytest.raises(ValueError, match=r"(share the stack axis \(3,\)|end with its bias shape)"):
        find_layers(params, r"blocks/kernel", stacked=r"blocks/.*")


@pytest.mark.parametrize("pattern", [r"kernel", r"a/", r".*/ker"])
def test_a_pattern_matching_only_part_of_every_path_is_refused(pattern):
    """A pattern must match a whole path: one that only finds a substring selects nothing, and
    is refused as such rather than silently adapting no layer."""
    assert peft_core.paths.matches("a/kernel", r".*kernel")
    with pytest.raises(ValueError, match=f"target pattern {re.escape(repr(pattern))} matches no"):
        peft_core.select(["a/kernel", "b/kernel"], pattern)
    with pytest.raises(ValueError, match="matches no param path"):
        find_layers(PARAMS, pattern)
