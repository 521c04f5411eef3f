"""ConvNeXt V1/V2: shapes, param paths, bf16, and torch-checkpoint conversion against an
independent numpy forward written from the official (NCHW, OIHW) formulas."""

from __future__ import annotations

import functools
import io
import os
import pickle
import re
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxprs import equations
from module_calls import calls_of
from scipy.special import erf
from torch_stand_in import install_torch_stand_in

from experiments.models import convnext as convnext_module
from experiments.models import convnext_checkpoint as ckpt
from experiments.models.convnext import (
    DWCONV_SIZE,
    GRN,
    ConvNeXt,
    ConvNeXtBlock,
    DropPath,
    convnext,
    convnext_for_tests,
)
from experiments.models.torch_zip import load_torch_file
from peft_core.paths import flatten

DEPTHS, DIMS = (1, 1, 2, 1), (8, 16, 32, 64)
NUM_CLASSES = 10
FLORA_CONV_PATTERN = r".*(Conv|conv|dwconv|pwconv)[^/]*/kernel"


def _apply(model: ConvNeXt, params: dict, x: np.ndarray, **kwargs: Any) -> jax.Array:
    """Jitted forward: one compile is cheaper on CPU than op-by-op dispatch."""
    return jax.jit(functools.partial(model.apply, **kwargs))({"params": params}, x)


def _images(n: int = 2, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype(np.float32)


# ----------------------------------------------------------------------------- torch-side data


def official_state_dict(version: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights with the official names and torch layouts (OIHW, (out, in))."""
    rng = np.random.default_rng(seed)

    def t(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (scale * rng.normal(size=shape)).astype(np.float32)

    sd = {
        "downsample_layers.0.0.weight": t(DIMS[0], 3, 4, 4),
        "downsample_layers.0.0.bias": t(DIMS[0]),
    }
    sd |= {"downsample_layers.0.1.weight": 1 + t(DIMS[0]), "downsample_layers.0.1.bias": t(DIMS[0])}
    for s, (depth, d) in enumerate(zip(DEPTHS, DIMS, strict=True)):
        if s:
            sd[f"downsample_layers.{s}.0.weight"] = 1 + t(DIMS[s - 1])
            sd[f"downsample_layers.{s}.0.bias"] = t(DIMS[s - 1])
            sd[f"downsample_layers.{s}.1.weight"] = t(d, DIMS[s - 1], 2, 2)
            sd[f"downsample_layers.{s}.1.bias"] = t(d)
        for b in range(depth):
            p = f"stages.{s}.{b}."
            sd |= {p + "dwconv.weight": t(d, 1, 7, 7), p + "dwconv.bias": t(d)}
            sd |= {p + "norm.weight": 1 + t(d), p + "norm.bias": t(d)}
            sd |= {p + "pwconv1.weight": t(4 * d, d), p + "pwconv1.bias": t(4 * d)}
            if version == 2:
                sd |= {p + "grn.gamma": t(1, 1, 1, 4 * d), p + "grn.beta": t(1, 1, 1, 4 * d)}
            sd |= {p + "pwconv2.weight": t(d, 4 * d), p + "pwconv2.bias": t(d)}
            if version == 1:
                sd[p + "gamma"] = 1 + t(d)
    sd |= {"norm.weight": 1 + t(DIMS[-1]), "norm.bias": t(DIMS[-1])}
    sd |= {"head.weight": t(NUM_CLASSES, DIMS[-1]), "head.bias": t(NUM_CLASSES)}
    return sd


def official_to_timm(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """timm's names for the same tensors (timm GRN params are flat (C,))."""
    rules = [
        (r"downsample_layers\.0\.(\d)\.", r"stem.\1."),
        (r"downsample_layers\.(\d)\.(\d)\.", r"stages.\1.downsample.\2."),
        (r"stages\.(\d+)\.(\d+)\.dwconv\.", r"stages.\1.blocks.\2.conv_dw."),
        (r"stages\.(\d+)\.(\d+)\.pwconv(\d)\.", r"stages.\1.blocks.\2.mlp.fc\3."),
        (r"stages\.(\d+)\.(\d+)\.grn\.gamma", r"stages.\1.blocks.\2.mlp.grn.weight"),
        (r"stages\.(\d+)\.(\d+)\.grn\.beta", r"stages.\1.blocks.\2.mlp.grn.bias"),
        (r"stages\.(\d+)\.(\d+)\.(norm|gamma)", r"stages.\1.blocks.\2.\3"),
        (r"^norm\.", "head.norm."),
        (r"^head\.(weight|bias)", r"head.fc.\1"),
    ]
    out = {}
    for key, value in sd.items():
        for pattern, repl in rules:
            key, n = re.subn(pattern, repl, key)
            if n:
                break
        out[key] = value.reshape(-1) if ".grn." in key else value
    return out


# ------------------------------------------------------------------ numpy reference (NCHW)


def np_layer_norm_channels_first(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(1, keepdims=True)
    var = ((x - mu) ** 2).mean(1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-6) * w[:, None, None] + b[:, None, None]


def np_patchify_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Conv with kernel == stride == p and no padding, as a reshape + einsum."""
    n, c, h, wd = x.shape
    p = w.shape[-1]
    patches = x.reshape(n, c, h // p, p, wd // p, p)
    return np.einsum("nchiwj,ocij->nohw", patches, w) + b[:, None, None]


def np_depthwise7(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    h, wd = x.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (3, 3), (3, 3)))
    out = np.zeros_like(x)
    for i in range(7):
        for j in range(7):
            out += xp[:, :, i : i + h, j : j + wd] * w[:, 0, i, j][:, None, None]
    return out + b[:, None, None]


def np_block(x: np.ndarray, sd: dict[str, np.ndarray], p: str, version: int) -> np.ndarray:
    y = np_depthwise7(x, sd[p + "dwconv.weight"], sd[p + "dwconv.bias"])
    y = y.transpose(0, 2, 3, 1)  # NHWC, as the official block does for its Linear layers
    mu = y.mean(-1, keepdims=True)
    y = (y - mu) / np.sqrt(((y - mu) ** 2).mean(-1, keepdims=True) + 1e-6)
    y = y * sd[p + "norm.weight"] + sd[p + "norm.bias"]
    y = y @ sd[p + "pwconv1.weight"].T + sd[p + "pwconv1.bias"]
    y = 0.5 * y * (1 + erf(y / np.sqrt(2)))
    if version == 2:
        gx = np.sqrt((y**2).sum(axis=(1, 2), keepdims=True))
        nx = gx / (gx.mean(-1, keepdims=True) + 1e-6)
        y = sd[p + "grn.gamma"] * (y * nx) + sd[p + "grn.beta"] + y
    y = y @ sd[p + "pwconv2.weight"].T + sd[p + "pwconv2.bias"]
    if version == 1:
        y = sd[p + "gamma"] * y
    return x + y.transpose(0, 3, 1, 2)


def np_convnext(images_nhwc: np.ndarray, sd: dict[str, np.ndarray], version: int) -> np.ndarray:
    x = images_nhwc.transpose(0, 3, 1, 2).astype(np.float64)
    for s, depth in enumerate(DEPTHS):
        conv, norm = (f"downsample_layers.{s}.{i}" for i in ((0, 1) if s == 0 else (1, 0)))
        if s:
            x = np_layer_norm_channels_first(x, sd[norm + ".weight"], sd[norm + ".bias"])
        x = np_patchify_conv(x, sd[conv + ".weight"], sd[conv + ".bias"])
        if not s:
            x = np_layer_norm_channels_first(x, sd[norm + ".weight"], sd[norm + ".bias"])
        for b in range(depth):
            x = np_block(x, sd, f"stages.{s}.{b}.", version)
    pooled = x.mean(axis=(2, 3))[:, :, None, None]
    pooled = np_layer_norm_channels_first(pooled, sd["norm.weight"], sd["norm.bias"])[:, :, 0, 0]
    return pooled @ sd["head.weight"].T + sd["head.bias"]


# ------------------------------------------------------------------------------------ model


def test_init_gives_f32_params_with_small_layer_scale_and_zero_bias():
    model = ConvNeXt(depths=(1,), dims=(8,), num_classes=3)  # one stage keeps the compile short
    rng = jax.random.key(0, impl="rbg")  # compiles ~4x faster than threefry on CPU
    variables = jax.jit(model.init)(rng, jnp.zeros((1, 8, 8, 3)))
    assert set(variables) == {"params"}
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
    params = variables["params"]
    chex.assert_trees_all_equal(params["stage0_block0"]["layer_scale"], jnp.full(8, 1e-6))
    chex.assert_trees_all_equal(params["head"]["bias"], jnp.zeros(3))
    assert 0.01 < float(jnp.std(params["stage0_block0"]["pwconv1"]["kernel"])) < 0.03


def test_num_classes_zero_returns_normalised_pooled_features():
    model = ConvNeXt(depths=(1,), dims=(8,), num_classes=0)
    x = _images(size=8)
    params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    assert "head" not in params
    params = jax.tree.map(lambda s: jnp.ones(s.shape), params)
    features = _apply(model, params, x)
    chex.assert_shape(features, (2, 8))
    # Every channel is equal, so LayerNorm (scale 1, bias 1) gives exactly 1; x - mean is
    # rounding noise there, which 1 / sqrt(eps) = 1000 amplifies to ~1e-4.
    chex.assert_trees_all_close(features, jnp.ones((2, 8)), atol=1e-3)


@pytest.mark.parametrize("version", [1, 2])
def test_param_tree_paths_and_conv_pattern(version):
    model = convnext_for_tests(version=version)
    shapes = {
        p: v.shape
        for p, v in flatten(
            jax.eval_shape(model.init, jax.random.key(0), _images())["params"]
        ).items()
    }
    expected_convs = {"stem_conv/kernel": (4, 4, 3, 8)}
    for s in range(1, 4):
        expected_convs[f"downsample{s}_conv/kernel"] = (2, 2, DIMS[s - 1], DIMS[s])
    for s, (depth, d) in enumerate(zip(DEPTHS, DIMS, strict=True)):
        for b in range(depth):
            expected_convs[f"stage{s}_block{b}/dwconv/kernel"] = (7, 7, 1, d)
            expected_convs[f"stage{s}_block{b}/pwconv1/kernel"] = (d, 4 * d)
            expected_convs[f"stage{s}_block{b}/pwconv2/kernel"] = (4 * d, d)
    selected = {p: s for p, s in shapes.items() if re.fullmatch(FLORA_CONV_PATTERN, p)}
    assert selected == expected_convs
    assert shapes["head/kernel"] == (64, NUM_CLASSES)
    assert ("stage2_block1/layer_scale" in shapes) == (version == 1)
    assert (shapes.get("stage2_block1/grn/gamma") == (128,)) == (version == 2)
    assert len(shapes) == 4 + 3 * 4 + 5 * (9 if version == 1 else 10) + 4


def test_named_variants_have_official_depths_and_widths():
    params = jax.eval_shape(
        convnext("tiny", version=2).init, jax.random.key(0), jnp.zeros((1, 32, 32, 3))
    )["params"]
    assert "stage2_block8" in params and "stage2_block9" not in params
    assert params["stage3_block2"]["pwconv1"]["kernel"].shape == (768, 3072)
    with pytest.raises(ValueError, match="unknown ConvNeXt variant 'huge'"):
        convnext("huge")


def test_bf16_compute_keeps_f32_params_and_tracks_the_reference():
    sd = official_state_dict(2)
    params = ckpt.convert(sd, convnext_for_tests(version=2))
    x = _images(seed=1)
    bf16 = _apply(convnext_for_tests(version=2, dtype=jnp.bfloat16), params, x)
    assert bf16.dtype == jnp.float32
    expected = np_convnext(x, sd, 2)
    chex.assert_trees_all_close(bf16, expected, atol=0.05 * np.abs(expected).max())
    assert not np.allclose(bf16, expected, atol=1e-5)  # it really computed in bf16


def _block_loss(block: ConvNeXtBlock, size: int) -> tuple[Any, Any, jax.Array]:
    """(loss(params, x), params, x) for one block on (2, size, size, 8) inputs: the output
    weighted by a fixed random cotangent, summed."""
    rng = np.random.default_rng(size)
    x = jnp.asarray(rng.normal(size=(2, size, size, 8)), jnp.float32)
    weights = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    params = block.init(jax.random.key(size), x)["params"]
    return lambda p, x: jnp.sum(block.apply({"params": p}, x) * weights), params, x


def test_dwconv_padding_adds_rows_only_to_maps_up_to_the_kernel_size():
    """kernel // 2 a side, plus zeros at the high end up to an output of kernel + 1."""
    pads = {s: convnext_module.depthwise_padding((s, s), 7) for s in (1, 5, 7, 8, 9, 14)}
    assert pads == {
        1: [(3, 10)] * 2, 5: [(3, 6)] * 2, 7: [(3, 4)] * 2, 8: [(3, 3)] * 2, 9: [(3, 3)] * 2,
        14: [(3, 3)] * 2,
    }  # fmt: skip
    assert convnext_module.depthwise_padding((2, 9), 3) == [(1, 3), (1, 1)]


@pytest.mark.parametrize("size", [1, 5, 7])
def test_dwconv_padding_keeps_values_and_gradients(size, monkeypatch):
    """The block's depthwise conv with extra output rows cut off (``depthwise_padding``, on maps
    up to 7 wide) gives the loss and gradients of the plain padding-3 conv."""
    assert convnext_module.depthwise_padding((size, size), 7) != [(3, 3)] * 2  # a real A/B
    loss, params, x = _block_loss(ConvNeXtBlock(version=1, layer_scale_init=1.0), size)
    got = jax.value_and_grad(loss, argnums=(0, 1))(params, x)
    monkeypatch.setattr(
        convnext_module, "depthwise_padding", lambda spatial, k: [(k // 2, k // 2)] * len(spatial)
    )
    want = jax.value_and_grad(loss, argnums=(0, 1))(params, x)
    assert np.abs(np.asarray(want[1][0]["dwconv"]["kernel"])).max() > 1e-2
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [1, 7, 14])
def test_dwconv_kernel_gradient_map_is_longer_than_the_kernel(size):
    """XLA's GPU conv rewriter runs a weight-gradient conv whose gradient map is no longer than
    the kernel as a slow forward conv (``depthwise_padding``): the conv that forms the dwconv
    kernel's gradient (a batch-grouped conv, the transpose of a feature-grouped one) must take
    a cotangent longer than the kernel on both spatial axes."""
    loss, params, x = _block_loss(ConvNeXtBlock(version=1), size)
    jaxpr = jax.make_jaxpr(jax.grad(loss))(params, x).jaxpr
    convs = [
        e for e in equations(jaxpr)
        if e.primitive.name == "conv_general_dilated" and e.params["batch_group_count"] > 1
    ]  # fmt: skip
    assert len(convs) == 1
    cotangent, spec = convs[0].invars[1].aval.shape, convs[0].params["dimension_numbers"].rhs_spec
    assert [cotangent[d] for d in spec[2:]] == [max(size, DWCONV_SIZE + 1)] * 2


def test_bad_inputs_raise():
    model = convnext_for_tests()
    with pytest.raises(ValueError, match="multiples of 32"):
        model.init(jax.random.key(0), jnp.zeros((1, 40, 40, 3)))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        model.init(jax.random.key(0), jnp.zeros((1, 32, 32)))
    with pytest.raises(ValueError, match="version must be 1 or 2"):
        convnext_for_tests(version=3).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    uneven = ConvNeXt(depths=(1, 1), dims=(8, 16, 32))
    with pytest.raises(
        ValueError, match=r"depths \(1, 1\) and dims \(8, 16, 32\) differ in length"
    ):
        uneven.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"drop_path_rate": 1.0}, r"drop_path_rate must be in \[0, 1\), got 1.0"),  # was NaN grads
        ({"drop_path_rate": -0.1}, r"drop_path_rate must be in \[0, 1\), got -0.1"),
        ({"num_classes": -1}, "num_classes must be >= 0, got -1"),
        # V2 has no layer scale (was ignored); <= 0 zeroed every branch (the official code's
        # "no layer scale", a param tree without it, is not offered)
        ({"version": 2, "layer_scale_init": 0.1}, "V2 has no layer scale"),
        ({"layer_scale_init": 0.0}, r"layer_scale_init must be > 0, got 0.0"),
    ],
)
def test_bad_options_raise(options, error):
    model = ConvNeXt(depths=DEPTHS, dims=DIMS, **options)
    with pytest.raises(ValueError, match=error):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_drop_path_zeroes_or_rescales_whole_samples(rate):
    x = jnp.ones((64, 2, 2, 3))
    out = DropPath(rate).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
    per_sample = np.asarray(out).reshape(64, -1)
    assert set(np.unique(per_sample)) <= {0.0, 1.0 / (1.0 - rate)}
    assert (per_sample == per_sample[:, :1]).all()
    if rate:
        assert 10 < (per_sample[:, 0] == 0).sum() < 54
    chex.assert_trees_all_equal(DropPath(rate).apply({}, x, deterministic=True), x)


def test_drop_path_at_rate_zero_is_the_identity_and_needs_no_rng():
    """The first block's rate is 0: a training forward without a 'dropout' rng must run."""
    x = jnp.ones((4, 2, 2, 3))
    chex.assert_trees_all_equal(DropPath(0.0).apply({}, x, deterministic=False), x)


@pytest.mark.parametrize("scale", [1.0, 1e-6])
def test_grn_is_the_official_formula(scale):
    """ConvNeXt V2's GRN: Gx = ||x||_2 over (H, W) per channel, Nx = Gx / (mean_C Gx + 1e-6),
    out = gamma (x Nx) + beta + x. At scale 1e-6 the 1e-6 is a large part of the denominator,
    so a norm taken another way (an RMS over H and W) shows."""
    rng = np.random.default_rng(0)
    x = (scale * rng.normal(size=(2, 3, 4, 5))).astype(np.float32)
    gamma = rng.normal(size=5).astype(np.float32)
    beta = (scale * rng.normal(size=5)).astype(np.float32)
    out = GRN().apply({"params": {"gamma": gamma, "beta": beta}}, x)
    x64 = x.astype(np.float64)
    gx = np.sqrt((x64**2).sum(axis=(1, 2), keepdims=True))
    nx = gx / (gx.mean(-1, keepdims=True) + 1e-6)
    want = gamma * (x64 * nx) + beta + x64
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * scale)


def test_grn_gradient_is_torch_s_where_a_channel_is_zero():
    """A channel whose map is zero (GELU of inputs below about -13 is exactly 0, e.g. on the
    1x1 maps of 32-pixel images) has norm 0: its gradient there is 0, as torch.norm's, not
    0 * inf = NaN. The reference differentiates the official formula in float64 by hand."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 3, 4))
    x[0, :, :, 1] = 0.0
    gamma, cotangent = rng.normal(size=4), rng.normal(size=x.shape)
    params = {"gamma": gamma.astype(np.float32), "beta": np.zeros(4, np.float32)}
    loss = lambda v: jnp.sum(GRN().apply({"params": params}, v) * cotangent)  # noqa: E731
    got = jax.grad(loss)(x.astype(np.float32))
    gx = np.sqrt((x**2).sum(axis=(1, 2), keepdims=True))
    denominator = gx.mean(-1, keepdims=True) + 1e-6
    d_nx = (cotangent * gamma * x).sum(axis=(1, 2), keepdims=True)
    d_gx = d_nx / denominator - (d_nx * gx).sum(-1, keepdims=True) / denominator**2 / x.shape[-1]
    d_x_of_gx = np.divide(x, gx, out=np.zeros_like(x), where=gx > 0)
    want = cotangent * (1 + gamma * gx / denominator) + d_gx * d_x_of_gx
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_drop_path_rates_rise_linearly_over_all_blocks():
    """timm's stochastic depth: linspace(0, rate, number of blocks) across the stages."""
    model = ConvNeXt(depths=DEPTHS, dims=DIMS, num_classes=NUM_CLASSES, drop_path_rate=0.4)
    params = ckpt.convert(official_state_dict(1), model)
    rates = calls_of(
        DropPath, lambda module, args: module.rate,
        lambda: model.apply({"params": params}, _images(), train=True,
                            rngs={"dropout": jax.random.key(0)}),
    )  # fmt: skip
    np.testing.assert_allclose(rates, [0.0, 0.1, 0.2, 0.3, 0.4], rtol=1e-6)  # 5 blocks


def test_drop_path_rate_acts_in_training():
    model = ConvNeXt(depths=DEPTHS, dims=DIMS, num_classes=NUM_CLASSES, drop_path_rate=0.9)
    sd = official_state_dict(1)
    x = _images(seed=1)
    trained = _apply(
        model, ckpt.convert(sd, model), x, train=True, rngs={"dropout": jax.random.key(3)}
    )
    chex.assert_shape(trained, (2, NUM_CLASSES))
    assert not np.allclose(trained, np_convnext(x, sd, 1), atol=1e-3)


# ------------------------------------------------------------------------------- conversion


@pytest.mark.parametrize("version", [1, 2])
def test_converted_forward_matches_numpy_reference(version):
    """Also shows that evaluation ignores drop-path (the model has drop_path_rate 0.5)."""
    sd = official_state_dict(version)
    model = ConvNeXt(
        depths=DEPTHS, dims=DIMS, version=version, num_classes=NUM_CLASSES, drop_path_rate=0.5
    )
    x = _images(seed=1)
    logits = _apply(model, ckpt.convert(sd, model), x)
    assert logits.dtype == jnp.float32
    chex.assert_trees_all_close(logits, np_convnext(x, sd, version), rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("version", [1, 2])
def test_timm_names_convert_like_official(version):
    sd = official_state_dict(version)
    model = convnext_for_tests(version=version)
    chex.assert_trees_all_equal(ckpt.convert(official_to_timm(sd), model), ckpt.convert(sd, model))


@pytest.mark.parametrize("version", [1, 2])
def test_round_trip_to_torch_layout_is_exact(version):
    sd = official_state_dict(version)
    back = ckpt.to_torch_state_dict(ckpt.convert(sd, convnext_for_tests(version=version)))
    assert back.keys() == sd.keys()
    chex.assert_trees_all_equal(back, sd)


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"stage0_block0": {"dwconv": {"kernel": np.zeros((7, 7, 1, 8)), "lora_a": np.zeros(8)}}},
         "stage0_block0/dwconv/lora_a"),
        ({"decoder": {"kernel": np.zeros((8, 8))}}, "decoder/kernel"),
        ({"stage0_block0": {"convolution": {"kernel": np.zeros((7, 7, 1, 8))}}},
         "stage0_block0/convolution/kernel"),
    ],
    ids=["adapter-leaf", "other-module", "other-leaf-module"],
)  # fmt: skip
def test_params_outside_a_convnext_tree_have_no_torch_name(params: dict, path: str):
    with pytest.raises(ValueError, match=f"^param '{path}' is not part of a ConvNeXt tree$"):
        ckpt.to_torch_state_dict(params)


def test_conv_kernels_are_relaid_out_not_copied():
    sd = official_state_dict(1)
    params = ckpt.convert(sd, convnext_for_tests(version=1))
    w = sd["downsample_layers.1.1.weight"]  # (out, in, kh, kw)
    k = params["downsample1_conv"]["kernel"]  # (kh, kw, in, out)
    assert k[1, 0, 3, 5] == w[5, 3, 1, 0]
    assert (
        params["stage0_block0"]["pwconv1"]["kernel"][2, 7] == sd["stages.0.0.pwconv1.weight"][7, 2]
    )


def test_half_precision_checkpoints_convert_to_float32():
    model = convnext_for_tests(version=2)
    half = {k: v.astype(np.float16) for k, v in official_state_dict(2).items()}
    params = ckpt.convert(half, model)
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {np.dtype(np.float32)}
    widened = {k: v.astype(np.float32) for k, v in half.items()}
    chex.assert_trees_all_equal(params, ckpt.convert(widened, model))


def test_block_and_stage_indices_of_several_digits_convert_both_ways():
    """ConvNeXt-S/B/L have 27 blocks in stage 2: block 26's official and timm names."""
    w = np.arange(5 * 7 * 7, dtype=np.float32).reshape(5, 1, 7, 7)
    for key in ("stages.2.26.dwconv.weight", "stages.2.blocks.26.conv_dw.weight"):
        flat = ckpt.rename_state_dict({key: w})
        assert list(flat) == ["stage2_block26/dwconv/kernel"]
        np.testing.assert_array_equal(flat["stage2_block26/dwconv/kernel"], w.transpose(2, 3, 1, 0))
    back = ckpt.to_torch_state_dict(
        {"stage2_block26": {"dwconv": {"kernel": w.transpose(2, 3, 1, 0)}}}
    )
    assert list(back) == ["stages.2.26.dwconv.weight"]
    np.testing.assert_array_equal(back["stages.2.26.dwconv.weight"], w)


def test_two_names_for_one_leaf_are_refused():
    """The official and the timm name of the stem conv in one state dict: neither may win."""
    sd = official_state_dict(1)
    both = {**sd, "stem.0.weight": sd["downsample_layers.0.0.weight"] + 1}
    with pytest.raises(ValueError, match=r"same Flax leaf \(1\):\n +stem\.0\.weight -> stem_conv/"):
        ckpt.rename_state_dict(both)


def test_errors_list_missing_unexpected_and_misshaped_keys():
    model = convnext_for_tests(version=1)
    sd = official_state_dict(1)
    del sd["stages.1.0.dwconv.bias"]
    sd["stages.0.0.pwconv2.weight"] = sd["stages.0.0.pwconv2.weight"][:, :5]
    with pytest.raises(ValueError) as err:
        ckpt.convert(sd, model)
    message = str(err.value)
    assert "missing: stage1_block0/dwconv/bias" in message
    assert "mis-shaped: stage0_block0/pwconv2/kernel" in message
    sd = official_state_dict(1)
    sd["stages.0.0.extra.weight"] = np.zeros(3, np.float32)
    sd["decoder.bias"] = np.zeros(3, np.float32)
    with pytest.raises(
        ValueError, match=r"unexpected keys[^\n]*\(2\):\n.*stages\.0\.0\.extra\.weight"
    ):
        ckpt.convert(sd, model)
    with pytest.raises(ValueError, match="unexpected: stage0_block0/grn/beta"):
        ckpt.convert(official_state_dict(2), model)  # V2 weights into a V1 model


# ------------------------------------------------------------------------- files and the CLI


def write_torch_zip(path: Path, obj: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Write ``obj`` (numpy arrays inside) the way torch.save's zip format does, without torch.

    Arrays are stored through a stand-in ``torch`` module so the pickle names the real globals
    (torch._utils._rebuild_tensor_v2, torch.FloatStorage); every array is stored transposed in
    its storage, after an offset, to exercise strides.
    """
    torch = install_torch_stand_in(monkeypatch, ["FloatStorage"])
    FloatStorage, _rebuild_tensor_v2 = torch.FloatStorage, torch._utils._rebuild_tensor_v2
    storages: dict[str, bytes] = {}

    class Storage:
        def __init__(self, key: str, numel: int) -> None:
            self.key, self.numel = key, numel

    class Tensor:
        def __init__(self, array: np.ndarray) -> None:
            self.array = np.asarray(array, np.float32)

        def __reduce__(self):
            key, offset = str(len(storages)), 3
            a = self.array.reshape(self.array.shape or (1,))
            flat = np.concatenate([np.full(offset, np.nan, "<f4"), a.T.reshape(-1)])
            storages[key] = flat.astype("<f4").tobytes()
            stride = tuple(int(np.prod(a.shape[:i])) for i in range(a.ndim))  # column-major
            args = (Storage(key, flat.size), offset, self.array.shape, stride[: self.array.ndim])
            return _rebuild_tensor_v2, (*args, False, OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", FloatStorage, obj.key, "cpu", obj.numel)
            return None

    def wrap(o: object) -> object:
        if isinstance(o, dict):
            return OrderedDict((k, wrap(v)) for k, v in o.items())
        return Tensor(o) if isinstance(o, np.ndarray) else o

    pickled = io.BytesIO()
    Pickler(pickled, protocol=2).dump(wrap(obj))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickled.getvalue())
        for key, raw in storages.items():
            archive.writestr(f"archive/data/{key}", raw)
        archive.writestr("archive/version", "3\n")


def test_torch_zip_reader_rebuilds_strided_tensors(tmp_path, monkeypatch):
    arrays = {
        "a": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        "b": np.array(7.0, np.float32),
    }
    write_torch_zip(tmp_path / "t.pth", {"model": arrays, "epoch": 3}, monkeypatch)
    monkeypatch.delitem(sys.modules, "torch")
    loaded = load_torch_file(tmp_path / "t.pth")
    assert loaded["epoch"] == 3
    chex.assert_trees_all_equal(dict(loaded["model"]), arrays)
    assert loaded["model"]["a"].flags.c_contiguous


def test_torch_zip_reader_refuses_foreign_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with zipfile.ZipFile(tmp_path / "evil.pth", "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"x": Evil()}, protocol=2))
    with pytest.raises(ValueError, match=r"evil.pth: refusing to unpickle global \w+\.print"):
        load_torch_file(tmp_path / "evil.pth")


@pytest.mark.parametrize(("source", "out_name"), [("pth", "convnext.npz"), ("npz", "convnext")])
def test_cli_converts_and_loader_reads_result(tmp_path, monkeypatch, capsys, source, out_name):
    """The output is named as np.savez names it: ".npz" added where missing."""
    sd = official_to_timm(official_state_dict(2)) if source == "npz" else official_state_dict(2)
    src = tmp_path / f"in.{source}"
    if source == "pth":
        write_torch_zip(src, {"model": sd}, monkeypatch)
        monkeypatch.delitem(sys.modules, "torch")
    else:
        np.savez(src, **sd)
    ckpt.main([str(src), str(tmp_path / "out" / out_name)])
    assert (
        f"wrote {tmp_path / 'out' / 'convnext.npz'}: ConvNeXt V2 depths=(1, 1, 2, 1) "
        "dims=(8, 16, 32, 64) num_classes=10" in capsys.readouterr().out
    )
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["convnext.npz"]
    model = convnext_for_tests(version=2)
    from_cli = ckpt.load_convnext_params(tmp_path / "out" / "convnext.npz", model)
    chex.assert_trees_all_equal(from_cli, ckpt.convert(official_state_dict(2), model))
    chex.assert_trees_all_equal(ckpt.load_convnext_params(src, model), from_cli)
    with pytest.raises(ValueError, match="does not fit"):
        ckpt.load_convnext_params(tmp_path / "out" / "convnext.npz", convnext_for_tests(version=1))


def test_cli_refuses_a_checkpoint_without_convnext_blocks(tmp_path, capsys):
    """A head alone (its names are ConvNeXt's) holds no stage to size the model by."""
    head = {k: v for k, v in official_state_dict(1).items() if k.startswith(("head.", "norm."))}
    np.savez(tmp_path / "head.npz", **head)
    with pytest.raises(ValueError, match=r"^no stage\{s\}_block\{b\}/dwconv/kernel leaves: not a "):
        ckpt.main([str(tmp_path / "head.npz"), str(tmp_path / "out.npz")])
    assert not (tmp_path / "out.npz").exists() and not capsys.readouterr().out


@pytest.mark.parametrize("args", [["in.pth", "gs://bucket/out.npz"], ["", "out.npz"]])
def test_cli_refuses_url_and_empty_paths(tmp_path, monkeypatch, capsys, args):
    """pathlib makes gs://bucket the local folder gs:/bucket; "" the working directory."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        ckpt.main(args)
    assert exit_info.value.code == 2
    assert re.search(r"this .*(is a URL|is an empty path)", capsys.readouterr().err)


def test_the_module_command_reports_bad_input_without_a_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "experiments.models.convnext_checkpoint",
         str(tmp_path / "absent.pth"), str(tmp_path / "out.npz")],
        capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: FileNotFoundError: no checkpoint at {tmp_path / 'absent.pth'}"
    )


@pytest.mark.parametrize("wrapper", ["model", "state_dict"])
def test_wrapped_state_dicts_are_unwrapped(tmp_path, monkeypatch, wrapper):
    """Training checkpoints hold the weights under "model" or "state_dict", beside the rest."""
    sd = official_state_dict(1)
    write_torch_zip(tmp_path / "w.pth", {wrapper: sd, "epoch": 3}, monkeypatch)
    monkeypatch.delitem(sys.modules, "torch")
    chex.assert_trees_all_equal(ckpt.read_state_dict(tmp_path / "w.pth"), sd)


@pytest.mark.parametrize(
    ("stored", "match"),
    [
        ({"stem.0.weight": np.zeros(3), "epoch": 3, "arch": "convnext_tiny"},
         r"entries that are not tensors: \['epoch', 'arch'\]$"),
        ({"model": {"stem.0.weight": np.zeros(3), "ema": {"stem.0.weight": np.zeros(3)}}},
         r"entries that are not tensors: \['ema'\]$"),
        (np.zeros(3), r"expected a state dict \(names to tensors\), got ndarray$"),
    ],
    ids=["metadata", "nested-dict", "one-tensor"],
)  # fmt: skip
def test_checkpoints_holding_other_than_tensors_are_refused(tmp_path, monkeypatch, stored, match):
    write_torch_zip(tmp_path / "w.pth", stored, monkeypatch)
    monkeypatch.delitem(sys.modules, "torch")
    with pytest.raises(ValueError, match=f"^{re.escape(str(tmp_path / 'w.pth'))}: {match}"):
        ckpt.load_convnext_params(tmp_path / "w.pth", convnext_for_tests())


def test_safetensors_checkpoints_load_like_the_state_dict(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    sd = official_state_dict(2)
    safetensors_numpy.save_file(sd, str(tmp_path / "w.safetensors"))
    model = convnext_for_tests(version=2)
    got = ckpt.load_convnext_params(tmp_path / "w.safetensors", model)
    chex.assert_trees_all_equal(got, ckpt.convert(sd, model))


def test_safetensors_without_the_package_says_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "w.safetensors").write_bytes(b"{}")
    for module in ("safetensors", "safetensors.numpy"):  # each import fails, as uninstalled
        monkeypatch.setitem(sys.modules, module, None)
    hint = r"needs the optional 'safetensors' package \(pip install safetensors\), or convert"
    with pytest.raises(ImportError, match=rf"w\.safetensors {hint} it to \.npz first$"):
        ckpt.load_convnext_params(tmp_path / "w.safetensors", convnext_for_tests())


def test_unknown_suffix_and_missing_file_raise(tmp_path):
    (tmp_path / "w.ckpt").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown checkpoint suffix '.ckpt'"):
        ckpt.read_state_dict(tmp_path / "w.ckpt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        ckpt.read_state_dict(tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="neither a zip nor a legacy torch file"):
        ckpt.read_state_dict(tmp_path / "junk.pth")
