"""flora_jax: the Tucker product, ranks per mode, init, apply/merge against numpy references."""

from __future__ import annotations

import math
import re
from typing import cast

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_core import assert_rounded_once

import peft_core
from experiments.models.convnext import convnext_for_tests
from experiments.models.efficientnet import EfficientNetLite
from flora_jax import CONV_TARGETS, flora, tucker_product
from flora_jax.tucker import matrix_factors
from peft_core.activation_grads import U_KEY, V_KEY

# ---------------------------------------------------------------- independent numpy references


def mode_product(x: np.ndarray, u: np.ndarray, mode: int) -> np.ndarray:
    """Textbook mode-n product: (X x_n U)[..., i, ...] = sum_j X[..., j, ...] U[i, j]."""
    return np.moveaxis(np.tensordot(u, x, axes=(1, mode)), 0, mode)


def np_tucker(core: np.ndarray, factors: list[np.ndarray]) -> np.ndarray:
    out = np.asarray(core, np.float64)
    for mode, u in enumerate(factors):
        out = mode_product(out, np.asarray(u, np.float64), mode)
    return out


def unfold(x: np.ndarray, mode: int) -> np.ndarray:
    """Mode-n unfolding: axis ``mode`` becomes the rows."""
    return np.moveaxis(x, mode, 0).reshape(x.shape[mode], -1)


def np_delta(entry: dict, kernel_shape: tuple[int, ...], scale: float) -> np.ndarray:
    """scale * G x_1 u0 x_2 u1 ..., reshaped to the kernel shape (unstacked layers)."""
    factors = [np.asarray(entry[f"u{n}"]) for n in range(len(entry) - 1)]
    return scale * np_tucker(np.asarray(entry["core"]), factors).reshape(kernel_shape)


def np_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, groups: int) -> np.ndarray:
    """VALID, stride-1 grouped conv: x (N, H, W, C), w HWIO (kh, kw, C/groups, O)."""
    kh, kw, cin, cout = w.shape
    out = np.zeros((x.shape[0], x.shape[1] - kh + 1, x.shape[2] - kw + 1, cout))
    per_group = cout // groups
    for g in range(groups):
        xs = x[..., g * cin : (g + 1) * cin]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, i : i + out.shape[1], j : j + out.shape[2], :]
                cols = slice(g * per_group, (g + 1) * per_group)
                out[..., cols] += patch @ w[i, j][:, cols]
    return out + b


def tree(**shapes: tuple[int, ...]) -> dict:
    """{'a.b.kernel': shape} -> nested dict of deterministic random float32 arrays."""
    rng = np.random.default_rng(0)
    flat = {k.replace(".", "/"): rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    return peft_core.unflatten({k: jnp.asarray(v) for k, v in flat.items()})


def randomize(aparams: dict, seed: int = 1, *, scale: float = 1.0) -> dict:
    """A copy of aparams (same tree structure) with every core redrawn from N(0, scale^2)."""
    rng = np.random.default_rng(seed)

    def redraw(path: tuple, x: jax.Array) -> jax.Array:
        if path[-1].key != "core":
            return x
        return jnp.asarray(scale * rng.normal(size=x.shape), x.dtype)

    return jax.tree_util.tree_map_with_path(redraw, aparams)


# ------------------------------------------------------------------------------ tucker_product


@pytest.mark.parametrize(
    ("dims", "ranks"),
    [((7, 5), (3, 2)), ((6, 4, 5), (2, 3, 4)), ((3, 3, 4, 6), (2, 1, 3, 2))],
)
def test_tucker_product_equals_sequential_mode_products(dims, ranks):
    rng = np.random.default_rng(len(dims))
    core = rng.normal(size=ranks).astype(np.float32)
    factors = [rng.normal(size=(d, r)).astype(np.float32) for d, r in zip(dims, ranks, strict=True)]
    out = tucker_product(jnp.asarray(core), [jnp.asarray(u) for u in factors])
    chex.assert_shape(out, dims)
    np.testing.assert_allclose(out, np_tucker(core, factors), rtol=1e-5, atol=1e-5)


def test_tucker_product_order2_is_u_g_vt():
    rng = np.random.default_rng(0)
    u, g, v = rng.normal(size=(5, 2)), rng.normal(size=(2, 3)), rng.normal(size=(4, 3))
    out = tucker_product(jnp.asarray(g, jnp.float32), [jnp.asarray(u), jnp.asarray(v)])
    np.testing.assert_allclose(out, u @ g @ v.T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("core", "factors", "message"),
    [
        ((2, 3), [(5, 2)], "needs 2 factors"),
        ((2, 3), [(5, 2), (4, 2)], r"factor 1 must have shape \(dim, 3\)"),
        ((2,), [(5,)], r"factor 0 must have shape \(dim, 2\)"),
    ],
)
def test_tucker_product_shape_errors(core, factors, message):
    with pytest.raises(ValueError, match=message):
        tucker_product(jnp.zeros(core), [jnp.zeros(f) for f in factors])


# ------------------------------------------------------------------- modes, ranks, init shapes

# name -> (kernel shape, bias shape or None)
KERNELS = {
    "dense": ((6, 5), (5,)),
    "query": ((8, 2, 4), (2, 4)),  # DenseGeneral (D, H, Dh)
    "out": ((2, 4, 8), (8,)),  # DenseGeneral (H, Dh, D)
    "conv": ((3, 3, 4, 6), (6,)),  # HWIO
    "dwconv": ((3, 3, 1, 6), (6,)),  # depthwise: feature_group_count = 6
    "conv1x1": ((1, 1, 4, 6), None),
}


def layer_params(name: str, dtype=jnp.float32) -> dict:
    kernel, bias = KERNELS[name]
    shapes = {f"{name}.kernel": kernel} | ({f"{name}.bias": bias} if bias else {})
    return jax.tree.map(lambda x: x.astype(dtype), tree(**shapes))


# (name, tucker, core shape, factor shapes) for rank=3, kernel_rank=2.
SHAPES = [
    ("dense", "nd", (3, 3), [(6, 3), (5, 3)]),
    ("dense", "matrix", (3, 3), [(6, 3), (5, 3)]),
    ("query", "nd", (3, 2, 3), [(8, 3), (2, 2), (4, 3)]),  # head axis clipped to 2
    ("query", "matrix", (3, 3), [(8, 3), (8, 3)]),
    ("out", "nd", (2, 3, 3), [(2, 2), (4, 3), (8, 3)]),
    ("out", "matrix", (3, 3), [(8, 3), (8, 3)]),
    ("conv", "nd", (2, 2, 3, 3), [(3, 2), (3, 2), (4, 3), (6, 3)]),
    ("conv", "matrix", (2, 2, 3, 3), [(3, 2), (3, 2), (4, 3), (6, 3)]),  # convs stay 4-D
    ("dwconv", "nd", (2, 2, 1, 3), [(3, 2), (3, 2), (1, 1), (6, 3)]),
    ("conv1x1", "nd", (1, 1, 3, 3), [(1, 1), (1, 1), (4, 3), (6, 3)]),
]


@pytest.mark.parametrize(
    ("dims", "ranks", "num_in", "stack", "inner"),
    [
        ((6, 3, 4), (2, 3, 2), 1, (), 2),  # q/k/v (D, H, Dh): through the input's rank
        ((3, 4, 6), (3, 2, 2), 2, (), 2),  # out (H, Dh, D): through the output's rank 2 < 6
        ((5, 7), (2, 3), 1, (2,), 2),  # a matrix, one stack axis
        ((3, 4, 6), (1, 2, 5), 2, (2, 3), 2),  # two stack axes
        ((8, 3, 4), (7, 2, 3), 1, (), 6),  # through two output modes of unequal ranks 2 x 3
        ((3, 4, 8), (3, 2, 7), 2, (), 6),  # through two input modes of unequal ranks 3 x 2
    ],
)
def test_matrix_factors_multiply_to_the_unfolded_tucker(dims, ranks, num_in, stack, inner):
    keys = jax.random.split(jax.random.key(0), len(dims) + 1)
    core = jax.random.normal(keys[0], (*stack, *ranks))
    shapes = [(*stack, d, r) for d, r in zip(dims, ranks, strict=True)]
    factors = [jax.random.normal(k, shape) for k, shape in zip(keys[1:], shapes, strict=True)]
    u, v = matrix_factors(core, factors, num_in)
    fan_in, fan_out = math.prod(dims[:num_in]), math.prod(dims[num_in:])
    chex.assert_shape([u, v], [(*stack, fan_in, inner), (*stack, inner, fan_out)])
    for index in np.ndindex(*stack):
        want = np_tucker(np.asarray(core[index]), [np.asarray(f[index]) for f in factors])
        got = np.asarray(u[index], np.float64) @ np.asarray(v[index], np.float64)
        np.testing.assert_allclose(got, want.reshape(fan_in, fan_out), rtol=1e-5, atol=1e-5)


def test_matrix_factors_reject_a_split_outside_the_modes():
    core, factors = jnp.ones((2, 2)), [jnp.ones((3, 2)), jnp.ones((4, 2))]
    for num_in in (0, 2):
        with pytest.raises(ValueError, match="num_in must be in"):
            matrix_factors(core, factors, num_in)


@pytest.mark.parametrize(("name", "tucker", "core", "factors"), SHAPES)
def test_init_shapes_ranks_and_identity(name, tucker, core, factors):
    params = layer_params(name)
    adapter = flora(3, kernel_rank=2, tucker=tucker, targets=f"{name}/kernel")
    aparams = adapter.init(jax.random.key(0), params)
    entry = aparams[name]
    assert sorted(entry) == ["core"] + [f"u{n}" for n in range(len(factors))]
    chex.assert_shape(entry["core"], core)
    for n, shape in enumerate(factors):
        chex.assert_shape(entry[f"u{n}"], shape)
    np.testing.assert_array_equal(entry["core"], 0.0)
    for merge_or_apply in (adapter.apply, adapter.merge):
        out = merge_or_apply(params, aparams)
        jax.tree.map(np.testing.assert_array_equal, out, params)


@pytest.mark.parametrize(("name", "tucker", "core", "factors"), SHAPES)
def test_multilinear_rank_of_delta_is_the_clipped_rank(name, tucker, core, factors):
    params = layer_params(name)
    adapter = flora(3, kernel_rank=2, tucker=tucker, targets=f"{name}/kernel")
    aparams = randomize(adapter.init(jax.random.key(0), params))
    kernel = params[name]["kernel"]
    delta = np.asarray(adapter.apply(params, aparams)[name]["kernel"] - kernel, np.float64)
    dims = [shape[0] for shape in factors]
    delta = delta.reshape(dims)  # the Tucker view (kernel axes, or fan_in x fan_out)
    ranks = [np.linalg.matrix_rank(unfold(delta, n), tol=1e-4) for n in range(delta.ndim)]
    assert tuple(ranks) == core


@pytest.mark.parametrize(
    ("name", "tucker"),
    # "nd" and "matrix" read dense kernels and convs alike (SHAPES); DenseGeneral's differ
    [("dense", "nd"), ("query", "nd"), ("query", "matrix"), ("out", "nd"), ("out", "matrix"),
     ("conv", "nd"), ("dwconv", "nd")],
)  # fmt: skip
@pytest.mark.parametrize("scale", [0.04, 4.0])
def test_apply_is_w0_plus_scaled_numpy_tucker(name, tucker, scale):
    params = layer_params(name)
    adapter = flora(3, scale=scale, tucker=tucker, targets=f"{name}/kernel")
    aparams = randomize(adapter.init(jax.random.key(1), params))
    kernel = np.asarray(params[name]["kernel"])
    expected = kernel + np_delta(aparams[name], kernel.shape, scale)
    out = adapter.apply(params, aparams)
    np.testing.assert_allclose(out[name]["kernel"], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[name]["bias"], params[name]["bias"])


def test_same_shaped_layers_batched_match_numpy_tucker():
    # three equal conv kernels form one batch; a DenseGeneral-like kernel with the same size but
    # other modes, and a dense kernel, stay apart
    params = tree(**{f"c{i}.kernel": (3, 3, 4, 6) for i in range(3)},
                  **{"q.kernel": (8, 2, 3), "d.kernel": (6, 5)})  # fmt: skip
    adapter = flora(2, scale=0.5, targets=r".*/kernel", tucker="nd")
    aparams = randomize(adapter.init(jax.random.key(1), params))
    out = adapter.apply(params, aparams)
    for name in ("c0", "c1", "c2", "q", "d"):
        kernel = np.asarray(params[name]["kernel"])
        expected = kernel + np_delta(aparams[name], kernel.shape, 0.5)
        np.testing.assert_allclose(out[name]["kernel"], expected, rtol=1e-5, atol=1e-5)


def test_init_distribution_follows_reference():
    params = tree(big=(2000, 1000))
    adapter = flora(4, targets="big")
    entry = adapter.init(jax.random.key(0), params)["big"]
    np.testing.assert_array_equal(entry["core"], 0.0)
    for n in (0, 1):  # Normal(0, 1 / sqrt(2 r)) as torch kaiming_normal_(a=sqrt(3)) on (dim, r)
        u = np.asarray(entry[f"u{n}"])
        assert abs(u.mean()) < 0.02
        np.testing.assert_allclose(u.std(), 1 / math.sqrt(2 * 4), rtol=0.05)
    assert not np.allclose(entry["u0"][:3], entry["u1"][:3])


def test_stacked_layers_get_one_independent_tucker_per_slice():
    params = tree(**{"scan.kernel": (3, 6, 5), "scan.bias": (3, 5)})
    adapter = flora(2, scale=0.4, targets="scan/kernel", stacked="scan/.*")
    init = adapter.init(jax.random.key(0), params)
    chex.assert_shape([init["scan"]["core"], init["scan"]["u0"]], [(3, 2, 2), (3, 6, 2)])
    jax.tree.map(np.testing.assert_array_equal, adapter.apply(params, init), params)
    aparams = randomize(init)
    delta = np.asarray(adapter.apply(params, aparams)["scan"]["kernel"] - params["scan"]["kernel"])
    for i in range(3):
        entry = jax.tree.map(lambda x, i=i: x[i], aparams["scan"])
        np.testing.assert_allclose(delta[i], np_delta(entry, (6, 5), 0.4), rtol=1e-4, atol=1e-5)
    assert not np.allclose(init["scan"]["u0"][0], init["scan"]["u0"][1])


def test_layer_ranks_override_one_layer():
    params = tree(**{"conv.kernel": (3, 3, 4, 6), "dense.kernel": (6, 5)})
    adapter = flora(3, targets=r".*/kernel", layer_ranks={r"conv/.*": (3, 1, 4, 2)}, tucker="nd")
    aparams = adapter.init(jax.random.key(0), params)
    chex.assert_shape(aparams["conv"]["core"], (3, 1, 4, 2))
    chex.assert_shape(aparams["dense"]["core"], (3, 3))


def test_nested_layer_names_and_no_targets():
    params = tree(**{"block.mlp.kernel": (6, 5), "block.mlp.bias": (5,)})
    adapter = flora(2, targets=r"block/mlp/kernel")
    flat_keys = randomize(adapter.init(jax.random.key(0), params))
    assert list(flat_keys) == ["block/mlp"]
    assert sorted(flat_keys["block/mlp"]) == ["core", "u0", "u1"]
    nested = peft_core.unflatten(peft_core.flatten(flat_keys))
    assert list(nested) == ["block"]
    chex.assert_trees_all_equal(adapter.apply(params, flat_keys), adapter.apply(params, nested))
    nothing = flora(2, targets=())
    assert nothing.init(jax.random.key(0), params) == {}
    chex.assert_trees_all_equal(nothing.apply(params, {}), params)


def test_param_count_by_hand():
    shapes = {"conv": (3, 3, 16, 32), "query": (768, 12, 64)}
    params = {
        "conv": {"kernel": jax.ShapeDtypeStruct(shapes["conv"], jnp.float32)},
        "query": {
            "kernel": jax.ShapeDtypeStruct(shapes["query"], jnp.float32),
            "bias": jax.ShapeDtypeStruct((12, 64), jnp.float32),
        },
    }

    def count(tucker: str) -> int:
        adapter = flora(8, kernel_rank=2, tucker=tucker, targets=r".*/kernel")
        return peft_core.param_count(jax.eval_shape(adapter.init, jax.random.key(0), params))

    conv = 2 * 2 * 8 * 8 + 3 * 2 + 3 * 2 + 16 * 8 + 32 * 8  # core + kh, kw, in, out factors
    query_nd = 8 * 8 * 8 + 768 * 8 + 12 * 8 + 64 * 8  # head mode rank min(8, 12) = 8
    query_matrix = 8 * 8 + 768 * 8 + 768 * 8
    assert count("nd") == conv + query_nd
    assert count("matrix") == conv + query_matrix


# ------------------------------------------------------------------------- a real flax model


class Tiny(nn.Module):
    """(N, 6, 6, 4) -> conv 3x3 -> depthwise 3x3 -> 4 tokens -> q-like -> out-like -> dense."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(8, (3, 3), padding="VALID", name="conv")(x)
        x = nn.Conv(8, (3, 3), padding="VALID", feature_group_count=8, name="dwconv")(x)
        x = x.reshape(x.shape[0], 4, 8)
        h = nn.DenseGeneral((2, 4), name="query")(x)
        x = nn.DenseGeneral(8, axis=(-2, -1), name="out")(h)
        return nn.Dense(3, name="dense")(x)


def np_tiny(p: dict, x: np.ndarray) -> np.ndarray:
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    x = np_conv(x, p["conv"]["kernel"], p["conv"]["bias"], groups=1)
    x = np_conv(x, p["dwconv"]["kernel"], p["dwconv"]["bias"], groups=8)
    x = x.reshape(x.shape[0], 4, 8)
    h = np.tensordot(x, p["query"]["kernel"], axes=(-1, 0)) + p["query"]["bias"]
    x = np.tensordot(h, p["out"]["kernel"], axes=([-2, -1], [0, 1])) + p["out"]["bias"]
    return x @ p["dense"]["kernel"] + p["dense"]["bias"]


TINY_TARGETS = r"(conv|dwconv|query|out|dense)/kernel"
X = np.random.default_rng(5).normal(size=(2, 6, 6, 4)).astype(np.float32)


def random_params(model: nn.Module, images: np.ndarray, seed: int = 0) -> dict:
    """Params of ``model``'s shapes drawn from N(0, 0.3^2) with numpy (no eager flax init)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), images)["params"]
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(0.3 * rng.normal(size=x.shape), x.dtype), shapes)


@pytest.fixture(scope="module")
def tiny_params() -> dict:
    return random_params(Tiny(), X)


def logits(params: dict) -> jax.Array:
    return cast(jax.Array, Tiny().apply({"params": params}, X))


@pytest.mark.parametrize("tucker", ["nd", "matrix"])
def test_model_adapted_and_merged_equal_numpy(tiny_params, tucker):
    adapter = flora(3, kernel_rank=2, scale=0.4, tucker=tucker, targets=TINY_TARGETS)
    aparams = randomize(adapter.init(jax.random.key(1), tiny_params))
    adapted = logits(adapter.apply(tiny_params, aparams))
    merged_params = adapter.merge(tiny_params, aparams)
    expected_params = {
        name: {
            "kernel": np.asarray(layer["kernel"])
            + np_delta(aparams[name], layer["kernel"].shape, 0.4),
            "bias": layer["bias"],
        }
        for name, layer in tiny_params.items()
    }
    expected = np_tiny(expected_params, X)
    np.testing.assert_allclose(adapted, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(logits(merged_params), expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(adapted, logits(tiny_params), atol=1e-3)  # the delta does something
    for leaf in jax.tree.leaves(merged_params):
        assert isinstance(leaf, jax.Array) and leaf.dtype == jnp.float32


def test_grads_flow_into_aparams_only(tiny_params):
    adapter = flora(3, targets=TINY_TARGETS)

    def loss(aparams):
        return jnp.sum(logits(adapter.apply(tiny_params, aparams)) ** 2)

    grad = jax.jit(jax.grad(loss))
    init = adapter.init(jax.random.key(1), tiny_params)
    grads = grad(init)
    chex.assert_trees_all_equal_shapes_and_dtypes(grads, init)
    for path, g in peft_core.flatten(grads).items():
        if path.endswith("/core"):  # dL/dG = s * dL/dW x_n U_n^T: non-zero
            assert np.abs(g).max() > 0, path
        else:  # dW is linear in G = 0, so every factor's gradient vanishes at init
            np.testing.assert_array_equal(g, 0.0, err_msg=path)
    trained = grad(randomize(init))
    for path, g in peft_core.flatten(trained).items():
        assert np.abs(g).max() > 0, path


def test_jit_vmap_and_bf16(tiny_params):
    adapter = flora(3, targets=TINY_TARGETS)
    sets = [randomize(adapter.init(jax.random.key(1), tiny_params), seed) for seed in (2, 3)]
    both = jax.tree.map(lambda *xs: jnp.stack(xs), *sets)
    batched = jax.jit(jax.vmap(lambda ap: logits(adapter.apply(tiny_params, ap))))(both)
    for i, aparams in enumerate(sets):
        expected = logits(adapter.apply(tiny_params, aparams))
        # float32 sums of terms as large as the largest logit (~800 here), in another order:
        # small logits are only exact to that scale (CI once saw 2.7e-4 on a logit of 8.5)
        scale = float(np.abs(expected).max())
        np.testing.assert_allclose(batched[i], expected, rtol=1e-5, atol=1e-6 * scale)
    assert not np.allclose(batched[0], batched[1])

    bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), tiny_params)
    merged = jax.jit(adapter.merge)(bf16, sets[0])
    assert {leaf.dtype for leaf in jax.tree.leaves(merged)} == {jnp.dtype(jnp.bfloat16)}
    f32 = adapter.merge(tiny_params, sets[0])
    chex.assert_trees_all_close(
        jax.tree.map(lambda x: x.astype(jnp.float32), merged), f32, rtol=2e-2, atol=2e-2
    )


class FourNarrowOneWide(nn.Module):
    """Four 8 -> 8 dense layers (one shape group) and one 8 -> 16 layer."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(4):
            x = nn.Dense(8, name=f"narrow{i}")(x)
        return nn.Dense(16, name="wide")(x)


def test_train_view_factors_are_the_update_batched_over_same_shaped_layers():
    model = FourNarrowOneWide()
    params = model.init(jax.random.key(0), jnp.ones((2, 8)))["params"]
    adapter = flora(2, targets=r".*/kernel", scale=0.5, grads="activation")
    assert adapter.train is not None
    aparams = randomize(adapter.init(jax.random.key(1), params))
    eff = peft_core.flatten(jax.jit(adapter.train.apply)(params, aparams))
    for name in ("narrow0", "narrow3", "wide"):
        want = np_delta(aparams[name], params[name]["kernel"].shape, 0.5)
        got = np.asarray(eff[f"{name}/{U_KEY}"], np.float64) @ np.asarray(eff[f"{name}/{V_KEY}"])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        # U is the input factor itself: only the core's side (scale G B^T) is a product, so
        # only it is batched (a batched U would stack its gradients for nothing)
        np.testing.assert_array_equal(eff[f"{name}/{U_KEY}"], aparams[name]["u0"])
    # one rank-r product per group of same-shaped layers, not one per layer (three launches a
    # layer on a GPU, forward and backward): the held kernels' own W0 + U V stay per layer
    text = jax.jit(adapter.train.apply).lower(params, aparams).as_text()
    shapes = re.findall(r"stablehlo.dot_general.*-> tensor<([0-9x]+)xf32>", text)
    assert sorted(s for s in shapes if s.count("x") == 2) == ["1x2x16", "4x2x8"], shapes


# ------------------------------------------------------------------------------------- errors


def test_bad_options_raise():
    for rank in (0, 2.5):
        with pytest.raises(ValueError, match="ranks must be ints >= 1"):
            flora(rank)
    with pytest.raises(ValueError, match="kernel_rank=0"):
        flora(4, kernel_rank=0)
    with pytest.raises(ValueError, match=r"tucker must be one of \('nd', 'matrix'\)"):
        flora(4, tucker="cp")


def test_bad_targets_and_layer_ranks_raise():
    params = layer_params("conv")
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="matches no param path"):
        flora(2, targets="convv/kernel").init(key, params)
    with pytest.raises(ValueError, match="did the pattern match a bias"):
        flora(2, targets="conv/bias").init(key, params)
    with pytest.raises(ValueError, match=r"layer_ranks: .*'dense/kernel' matches no"):
        flora(2, targets="conv/kernel", layer_ranks={"dense/kernel": (2, 2)}).init(key, params)
    with pytest.raises(ValueError, match=r"give 4 ranks"):
        flora(2, targets="conv/kernel", layer_ranks={"conv/kernel": (2, 2)}).init(key, params)
    with pytest.raises(ValueError, match=r"sizes \(3, 3, 4, 6\)"):
        flora(2, targets="conv/kernel", layer_ranks={"conv/kernel": (4, 2, 2, 2)}).init(key, params)
    # a dense kernel (6, 5) cannot hold rank 6, as LoRA's cannot, in either view (both are its
    # matrix: clipped, the core would be full-size); conv modes and a DenseGeneral's nd modes clip
    # (a head axis of 2 at rank 3 above)
    dense = layer_params("dense")
    for tucker in ("matrix", "nd"):
        with pytest.raises(ValueError, match=r"FLoRA rank 6 exceeds min\(fan_in, fan_out\) = 5"):
            flora(6, targets="dense/kernel", tucker=tucker).init(key, dense)
        assert flora(5, targets="dense/kernel", tucker=tucker).init(key, dense)["dense"][
            "core"
        ].shape == (5, 5)
    # nor can any kernel a rank above all its channel modes: a 1x1 conv (4 -> 6) at 7, a q/k/v
    # (8, 2, 4) at 9; at 6 and 8 the larger mode still holds the rank
    for name, too_big in (("conv1x1", 7), ("query", 9)):
        with pytest.raises(ValueError, match=rf"rank {too_big} exceeds every channel mode"):
            flora(too_big, targets=f"{name}/kernel").init(key, layer_params(name))
        flora(too_big - 1, targets=f"{name}/kernel").init(key, layer_params(name))


def test_aparams_that_do_not_fit_raise():
    params = {**layer_params("conv"), **layer_params("dense")}
    adapter = flora(2, targets=r"(conv|dense)/kernel")
    aparams = adapter.init(jax.random.key(0), params)
    with pytest.raises(ValueError, match="missing: conv/core"):
        adapter.apply(params, {"dense": aparams["dense"]})
    wrong = {**aparams, "dense": {**aparams["dense"], "u1": jnp.zeros((5, 3))}}
    with pytest.raises(ValueError, match=r"mis-shaped: dense/u1: expected \(5, 2\), got \(5, 3\)"):
        adapter.merge(params, wrong)
    other_rank = flora(3, targets=r"(conv|dense)/kernel")
    with pytest.raises(ValueError, match="FLoRA params does not fit"):
        other_rank.apply(params, aparams)
    with pytest.raises(ValueError, match="flora has no search space"):
        adapter.apply(params, aparams, {"A": 1})


# ------------------------------------------------------------------------------------- targets


def kernel_paths(params: dict) -> list[str]:
    return [p for p in peft_core.flatten(params) if p.endswith("/kernel")]


@pytest.mark.parametrize("model", [convnext_for_tests(), EfficientNetLite()])
def test_conv_targets_select_every_backbone_kernel_but_the_head(model):
    images = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.key(0), images)["params"]
    selected = peft_core.select(peft_core.flatten(params), CONV_TARGETS)
    assert selected == [p for p in kernel_paths(params) if p != "head/kernel"]
    adapter = flora(4, targets=CONV_TARGETS)
    aparams = jax.eval_shape(adapter.init, jax.random.key(0), params)
    assert sorted(aparams) == sorted(p.removesuffix("/kernel") for p in selected)


@pytest.mark.slow
def test_convnext_merged_kernels_are_w0_plus_numpy_tucker():
    """Every ConvNeXt conv (stem, downsampling, depthwise, pointwise) merges to W0 + s G x U."""
    model = convnext_for_tests()
    images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
    params = random_params(model, images)
    adapter = flora(4, scale=4.0, targets=CONV_TARGETS)
    aparams = randomize(adapter.init(jax.random.key(1), params), scale=1e-2)
    flat_aparams = peft_core.flatten(aparams)
    chex.assert_shape(
        [flat_aparams["stage0_block0/dwconv/core"], flat_aparams["stage0_block0/dwconv/u2"]],
        [(2, 2, 1, 4), (1, 1)],
    )
    flat, merged = (
        peft_core.flatten(params),
        peft_core.flatten(jax.jit(adapter.merge)(params, aparams)),
    )
    targeted = peft_core.select(flat, CONV_TARGETS)
    assert len(targeted) == len(aparams) > 3
    for path, w0 in flat.items():
        if path not in targeted:
            np.testing.assert_array_equal(merged[path], w0, err_msg=path)
            continue
        layer = path.removesuffix("/kernel")
        entry = {
            k.rsplit("/", 1)[1]: v for k, v in flat_aparams.items() if k.startswith(f"{layer}/")
        }
        want = np.asarray(w0, np.float64) + np_delta(entry, w0.shape, 4.0)
        np.testing.assert_allclose(merged[path], want, rtol=1e-5, atol=1e-6, err_msg=path)
    forward = jax.jit(lambda p: model.apply({"params": p}, images))
    assert not np.allclose(forward(adapter.apply(params, aparams)), forward(params), atol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"layer_ranks": {"dense/kernel": 2}},
            r"layer_ranks\['dense/kernel'\] = 2: give a sequence",
        ),
        ({"layer_ranks": {"dense/kernel": (2.0, 2.0)}}, r"give 2 ranks, each in \[1, mode size\]"),
        ({"scale": 0.0}, "scale must be a finite non-zero number, got 0.0"),
        ({"scale": float("nan")}, "scale must be a finite non-zero number, got nan"),
        ({"scale": float("inf")}, "scale must be a finite non-zero number, got inf"),
        ({"scale": "4"}, "scale must be a finite non-zero number, got '4'"),
        ({"dtype": jnp.int32}, "FLoRA dtype must be a floating dtype"),
    ],
)
def test_bad_flora_options_are_named(kwargs: dict, match: str):
    with pytest.raises(ValueError, match=match):
        flora(2, targets="dense/kernel", **kwargs).init(jax.random.key(0), layer_params("dense"))


# ------------------------------------------------------- audit: boundaries and per-mode rules


def test_tucker_product_takes_every_order_up_to_the_alphabet():
    # order 26 (one einsum letter per mode) is the largest; 27 is refused by name
    rng = np.random.default_rng(0)
    dims = (2, 1, 3) + (1,) * 23
    core = rng.normal(size=(1,) * 26).astype(np.float32)
    factors = [rng.normal(size=(d, 1)).astype(np.float32) for d in dims]
    out = tucker_product(jnp.asarray(core), [jnp.asarray(u) for u in factors])
    chex.assert_shape(out, dims)
    np.testing.assert_allclose(out, np_tucker(core, factors), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"Tucker order must be in \[1, 26\], got 27"):
        tucker_product(jnp.ones((1,) * 27), [jnp.ones((1, 1))] * 27)


@pytest.mark.parametrize(
    ("tucker", "core", "factors"),
    [
        # DenseGeneral over two input axes to two output axes (bias (2, 5)): no spatial modes,
        # every axis a channel mode at rank 3 (clipped to 2), not a conv at kernel_rank 1
        ("nd", (3, 3, 2, 3), [(4, 3), (3, 3), (2, 2), (5, 3)]),
        ("matrix", (3, 3), [(12, 3), (10, 3)]),
    ],
)
def test_a_four_axis_kernel_with_two_output_axes_is_not_a_conv(tucker, core, factors):
    params = tree(**{"proj.kernel": (4, 3, 2, 5), "proj.bias": (2, 5)})
    adapter = flora(3, kernel_rank=1, tucker=tucker, targets="proj/kernel")
    aparams = randomize(adapter.init(jax.random.key(0), params))
    entry = aparams["proj"]
    chex.assert_shape(entry["core"], core)
    chex.assert_shape([entry[f"u{n}"] for n in range(len(factors))], factors)
    kernel = np.asarray(params["proj"]["kernel"])
    expected = kernel + np_delta(entry, kernel.shape, 4.0)
    out = adapter.apply(params, aparams)["proj"]["kernel"]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_layer_ranks_first_matching_pattern_wins():
    params = tree(**{"conv.kernel": (3, 3, 4, 6), "dense.kernel": (6, 5)})
    layer_ranks = {
        r"conv/.*": (3, 1, 4, 2),
        r"dense/.*": (2, 4),
        r"c.*": (1, 1, 1, 1),
        r"d.*": (1, 1),
    }
    adapter = flora(3, targets=r".*/kernel", layer_ranks=layer_ranks)
    aparams = jax.eval_shape(adapter.init, jax.random.key(0), params)
    chex.assert_shape([aparams["conv"]["core"], aparams["dense"]["core"]], [(3, 1, 4, 2), (2, 4)])


def test_layer_ranks_with_too_many_modes_are_named():
    with pytest.raises(ValueError, match=r"give 4 ranks, each in \[1, mode size\]"):
        flora(2, targets="conv/kernel", layer_ranks={"conv/kernel": (2, 2, 2, 2, 2)}).init(
            jax.random.key(0), layer_params("conv")
        )


def test_a_rank_above_every_channel_mode_is_refused_whatever_the_spatial_size():
    # a 3x3 conv of 2 -> 2 channels: rank 3 fits its spatial modes, but no channel mode holds it
    params = tree(**{"conv.kernel": (3, 3, 2, 2)})
    with pytest.raises(
        ValueError, match=r"rank 3 exceeds every channel mode .* \(sizes \(2, 2\)\)"
    ):
        flora(3, targets="conv/kernel").init(jax.random.key(0), params)
    flora(2, targets="conv/kernel").init(jax.random.key(0), params)


def test_init_std_of_each_factor_follows_its_own_rank():
    # torch's kaiming_normal_(a=sqrt(3)) per (dim_n, r_n) factor: std 1 / sqrt(2 r_n)
    params = tree(big=(2000, 1000))
    adapter = flora(8, targets="big", layer_ranks={"big": (2, 8)})
    entry = adapter.init(jax.random.key(0), params)["big"]
    for n, r in ((0, 2), (1, 8)):
        np.testing.assert_allclose(
            np.asarray(entry[f"u{n}"]).std(), 1 / math.sqrt(2 * r), rtol=0.05
        )


@pytest.mark.parametrize("factor_dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
@pytest.mark.parametrize("param_dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
@pytest.mark.parametrize(
    ("name", "tucker"), [("dense", "nd"), ("query", "nd"), ("query", "matrix")]
)
def test_update_is_formed_in_f32_and_rounded_once(name, tucker, param_dtype, factor_dtype):
    # W0 + s G x1 U1 ... against float64 numpy: apply, merge and the train view's kernel round
    # the sum once to the param's dtype, whatever the core's and factors' dtype
    params = layer_params(name, param_dtype)
    adapter = flora(
        3, scale=0.3, tucker=tucker, targets=f"{name}/kernel", dtype=factor_dtype,
        grads="activation",
    )  # fmt: skip
    assert adapter.train is not None
    aparams = randomize(adapter.init(jax.random.key(0), params), scale=0.2)
    kernel = params[name]["kernel"]
    delta = np_delta(aparams[name], kernel.shape, 0.3)
    ref = np.asarray(kernel, np.float64) + delta
    for eff in (
        adapter.apply(params, aparams),
        adapter.merge(params, aparams),
        adapter.train.apply(params, aparams),
    ):
        got = eff[name]["kernel"]
        assert got.dtype == param_dtype
        assert_rounded_once(got, ref, delta_scale=float(np.abs(delta).max()))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_init_holds_the_core_and_factors_in_the_adapter_dtype(dtype):
    params = layer_params("query")
    adapter = flora(3, targets="query/kernel", dtype=dtype)
    aparams = adapter.init(jax.random.key(0), params)
    assert {leaf.dtype for leaf in jax.tree.leaves(aparams)} == {jnp.dtype(dtype)}
    out = adapter.apply(params, randomize(aparams))
    assert out["query"]["kernel"].dtype == jnp.float32


@pytest.mark.parametrize(
    ("name", "tucker"), [("query", "nd"), ("query", "matrix"), ("out", "nd"), ("out", "matrix")]
)
def test_train_view_factors_of_dense_general_kernels_are_the_update(name, tucker):
    # the activation-space U V of a DenseGeneral kernel, in either view, is its Tucker update
    params = layer_params(name)
    adapter = flora(3, scale=0.5, tucker=tucker, targets=f"{name}/kernel", grads="activation")
    assert adapter.train is not None
    aparams = randomize(adapter.init(jax.random.key(1), params))
    eff = adapter.train.apply(params, aparams)
    kernel = np.asarray(params[name]["kernel"])
    fan_out = KERNELS[name][1][0] if name == "out" else math.prod(KERNELS[name][1])
    want = np_delta(aparams[name], kernel.shape, 0.5).reshape(-1, fan_out)
    got = np.asarray(eff[name][U_KEY], np.float64) @ np.asarray(eff[name][V_KEY], np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
