"""ViT forward vs a numpy reference, layouts (scan), dtypes, drop path, padded tokens, the patch
matmul and the npz checkpoint loader (legacy / linen / ours / scanned key layouts, heads,
pos-embedding resampling, errors)."""

from __future__ import annotations

import contextlib
import math
import re

import chex
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax.sharding import AbstractMesh, AxisType
from jaxprs import equations
from module_calls import calls_of

from experiments.models import attention
from experiments.models import vit as vit_module
from experiments.models.attention import (
    ROW_MULTIPLE,
    MultiHeadDotProductAttention,
    masked_dot_product_attention,
    pad_tokens,
    padded_length,
)
from experiments.models.vit import REMAT_POLICIES, Encoder1DBlock, ViTConfig, drop_path, vit
from experiments.models.vit_checkpoint import (
    CheckpointMismatchError,
    checkpoint_grid,
    image_grid,
    load_npz,
    load_params,
    npz_metadata,
    resample_grid,
    save_npz,
    stack_blocks,
    unstack_blocks,
)
from peft_core.activation_grads import per_device
from peft_core.paths import flatten, unflatten

PATCH = 16
RNG = jax.random.PRNGKey(0)


def tiny(**options):
    """Ti width (192, 3 heads) with 2 blocks, patch 16."""
    return vit("Ti", patch=PATCH, depth=2, **options)


def images(size: int = 32, batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, size, size, 3)).astype(np.float32)


def random_params(model, x, seed: int = 1):
    """The model's param tree (shapes from jax.eval_shape) filled with N(0, 0.3²) values: cheaper
    than model.init, and zero-initialised heads and layer scales then matter."""
    shapes = jax.eval_shape(model.init, RNG, x)["params"]
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(0.0, 0.3, s.shape).astype(s.dtype), shapes)


def apply(model, params, x):
    return model.apply({"params": params}, x)


# ------------------------------------------------------------------ numpy reference ViT


def np_layer_norm(x, p, eps=1e-6):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def np_gelu(x, approximate):
    if approximate:
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def np_attention(x, p, num_queries=None, num_keys=None):
    """Textbook attention, every bias added: the first num_queries tokens (None: all) attend to
    the first num_keys (None: all)."""
    q = np.einsum("bnd,dhk->bnhk", x[:, :num_queries], p["q"]["kernel"]) + p["q"]["bias"]
    k, v = (
        np.einsum("bnd,dhk->bnhk", x[:, :num_keys], p[n]["kernel"]) + p[n]["bias"] for n in "kv"
    )
    logits = np.einsum("bqhk,bshk->bhqs", q, k) / math.sqrt(q.shape[-1])
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    o = np.einsum("bhqs,bshk->bqhk", w, v)
    return np.einsum("bqhk,hkd->bqd", o, p["o"]["kernel"]) + p["o"]["bias"]


def np_vit(params, x, *, pool, gelu_approximate, eps=1e-6):
    """Reference forward in float64 from the textbook formulas, every LayerNorm's epsilon eps."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    b, h, w, c = x.shape
    gh, gw = h // PATCH, w // PATCH
    patches = x.reshape(b, gh, PATCH, gw, PATCH, c).transpose(0, 1, 3, 2, 4, 5)
    kernel = p["embedding"]["kernel"].reshape(PATCH * PATCH * c, -1)
    t = patches.reshape(b, gh * gw, -1) @ kernel + p["embedding"]["bias"]
    t = np.concatenate([np.broadcast_to(p["cls"], (b, 1, t.shape[-1])), t], axis=1)
    t = t + p["pos_embedding"]
    enc = p["Transformer"]
    for i in range(sum(name.startswith("encoderblock_") for name in enc)):
        blk = enc[f"encoderblock_{i}"]
        a = blk["MultiHeadDotProductAttention_0"]
        attn = {"q": a["query"], "k": a["key"], "v": a["value"], "o": a["out"]}
        t = t + blk["ls1"] * np_attention(np_layer_norm(t, blk["LayerNorm_0"], eps), attn)
        m = blk["MlpBlock_0"]
        y = np_layer_norm(t, blk["LayerNorm_1"], eps)
        y = y @ m["Dense_0"]["kernel"] + m["Dense_0"]["bias"]
        y = np_gelu(y, gelu_approximate) @ m["Dense_1"]["kernel"] + m["Dense_1"]["bias"]
        t = t + blk["ls2"] * y
    t = np_layer_norm(t, enc["encoder_norm"], eps)
    t = t[:, 0] if pool == "tok" else t[:, 1:].mean(1)
    return t @ p["head"]["kernel"] + p["head"]["bias"]


@pytest.mark.parametrize("pool", ["tok", "gap"])
@pytest.mark.parametrize("gelu_approximate", [True, False])
def test_forward_matches_numpy_reference(pool, gelu_approximate):
    model = tiny(num_classes=5, pool=pool, layer_scale=0.5, gelu_approximate=gelu_approximate)
    x = images(32)
    params = random_params(model, x)
    got = apply(model, params, x)
    want = np_vit(params, x.astype(np.float64), pool=pool, gelu_approximate=gelu_approximate)
    chex.assert_trees_all_close(got, want.astype(np.float32), atol=2e-4, rtol=2e-4)


def test_layer_norm_eps_is_every_norms_epsilon():
    """``layer_norm_eps`` reaches the blocks' norms and the encoder's: a large one (0.5, far from
    flax's 1e-6 default) against the reference with that epsilon."""
    model = vit("Ti", patch=PATCH, depth=1, num_classes=5, layer_scale=0.5, layer_norm_eps=0.5)
    x = images(16)
    params = random_params(model, x)
    want = np_vit(params, x.astype(np.float64), pool="tok", gelu_approximate=True, eps=0.5)
    got = jax.jit(model.apply)({"params": params}, x)
    chex.assert_trees_all_close(got, want.astype(np.float32), atol=2e-4)


def test_gap_without_class_token_averages_every_patch_token():
    """pool="gap" with no class token is the mean over all tokens of pool="none"'s output."""
    x = images(32)  # 4 patch tokens
    gap = vit("Ti", patch=PATCH, depth=1, pool="gap", class_token=False)
    every = vit("Ti", patch=PATCH, depth=1, pool="none", class_token=False)
    params = {"params": random_params(gap, x)}
    tokens = np.asarray(jax.jit(every.apply)(params, x), np.float64)
    chex.assert_shape(tokens, (2, 4, 192))
    got = jax.jit(gap.apply)(params, x)
    chex.assert_trees_all_close(got, tokens.mean(1).astype(np.float32), atol=1e-5)


def test_fresh_init_has_a_zero_head_and_layer_scales_at_their_value():
    """big_vision's fine-tuning head starts at zero; LayerScale vectors at ``layer_scale``."""
    model = vit("Ti", patch=PATCH, depth=1, num_classes=3, layer_scale=0.3)
    params = jax.jit(model.init)(RNG, jnp.zeros((1, 16, 16, 3)))["params"]
    chex.assert_trees_all_equal(params["head"]["kernel"], jnp.zeros((192, 3)))
    block = params["Transformer"]["encoderblock_0"]
    chex.assert_trees_all_close((block["ls1"], block["ls2"]), (jnp.full(192, 0.3),) * 2)


# ------------------------------------------------------------------------ shapes and trees


@pytest.mark.parametrize(
    "variant,options,expected",
    [
        ("Ti", dict(num_classes=7), (2, 7)),
        ("Ti", dict(pool="gap", class_token=False), (2, 192)),
        ("Ti", dict(pool="none"), (2, 5, 192)),
        ("S", dict(pool="gap", representation_size=32, num_classes=3), (2, 3)),
        ("S", dict(), (2, 384)),
    ],
)
def test_forward_shapes(variant, options, expected):
    model = vit(variant, patch=PATCH, depth=1, **options)
    x = images(32)
    out = apply(model, random_params(model, x), x)
    chex.assert_shape(out, expected)
    assert out.dtype == jnp.float32


def b16_block_shapes(prefix: tuple[int, ...] = ()) -> dict[str, tuple[int, ...]]:
    blk = {
        "LayerNorm_0/scale": (768,),
        "LayerNorm_0/bias": (768,),
        "LayerNorm_1/scale": (768,),
        "LayerNorm_1/bias": (768,),
        "MlpBlock_0/Dense_0/kernel": (768, 3072),
        "MlpBlock_0/Dense_0/bias": (3072,),
        "MlpBlock_0/Dense_1/kernel": (3072, 768),
        "MlpBlock_0/Dense_1/bias": (768,),
        "MultiHeadDotProductAttention_0/out/kernel": (12, 64, 768),
        "MultiHeadDotProductAttention_0/out/bias": (768,),
    }
    for name in ("query", "key", "value"):
        blk[f"MultiHeadDotProductAttention_0/{name}/kernel"] = (768, 12, 64)
        blk[f"MultiHeadDotProductAttention_0/{name}/bias"] = (12, 64)
    return {k: prefix + v for k, v in blk.items()}


@pytest.mark.parametrize("scan", [False, True])
def test_b16_param_tree(scan):
    model = vit("B", patch=16, num_classes=10, representation_size=768, scan=scan)
    shapes = jax.eval_shape(model.init, RNG, jnp.zeros((1, 224, 224, 3)))["params"]
    got = {k: v.shape for k, v in flatten(shapes).items()}
    want = {
        "embedding/kernel": (16, 16, 3, 768),
        "embedding/bias": (768,),
        "cls": (1, 1, 768),
        "pos_embedding": (1, 197, 768),
        "Transformer/encoder_norm/scale": (768,),
        "Transformer/encoder_norm/bias": (768,),
        "pre_logits/kernel": (768, 768),
        "pre_logits/bias": (768,),
        "head/kernel": (768, 10),
        "head/bias": (10,),
    }
    if scan:
        want |= {f"Transformer/encoderblock/{k}": v for k, v in b16_block_shapes((12,)).items()}
    else:
        for i in range(12):
            want |= {f"Transformer/encoderblock_{i}/{k}": v for k, v in b16_block_shapes().items()}
    assert got == want


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="multiples of patch 16"):
        random_params(tiny(), jnp.zeros((1, 40, 32, 3)))
    with pytest.raises(ValueError, match="multiples of patch 16"):
        random_params(tiny(), jnp.zeros((1, 32, 40, 3)))  # the width too
    with pytest.raises(ValueError, match=r"drop_path_rate must be in \[0, 1\)"):
        tiny(drop_path_rate=1.0)  # the last block would divide by 1 - 1
    with pytest.raises(ValueError, match="pool='tok' needs class_token"):
        tiny(class_token=False)
    with pytest.raises(ValueError, match="unknown ViT variant 'XL'"):
        vit("XL", patch=16)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"pool": "max"}, "pool must be 'tok', 'gap' or 'none', got 'max'"),
        ({"width": 10}, "width 10 not divisible by num_heads 3"),
        ({"num_heads": 0}, "num_heads must be >= 1, got 0"),  # was a ZeroDivisionError
        ({"depth": 0}, "depth must be >= 1, got 0"),
        ({"patch_size": -1}, "patch_size must be >= 1, got -1"),
        ({"num_classes": -1}, "num_classes must be >= 0, got -1"),  # was a headless model
        ({"representation_size": 0}, "representation_size must be None or >= 1, got 0"),
    ],
)
def test_bad_config_sizes_raise(options, error):
    sizes = {"width": 12, "depth": 1, "mlp_dim": 4, "num_heads": 3, "patch_size": 4}
    ViTConfig(**sizes)  # legal: the options alone make it fail
    with pytest.raises(ValueError, match=error):
        ViTConfig(**{**sizes, **options})


# ------------------------------------------------------------------- scan, dtype, drop path


REMATS = [(False, None), (True, None), *((True, policy) for policy in REMAT_POLICIES)]


@pytest.mark.parametrize(("remat", "policy"), REMATS)
def test_scan_equals_unscanned(remat, policy):
    x = images(32)
    plain = tiny(num_classes=4, layer_scale=0.3)
    params = random_params(plain, x)
    scanned = tiny(num_classes=4, layer_scale=0.3, scan=True, remat=remat, remat_policy=policy)
    stacked = unflatten(stack_blocks(flatten(params)))
    chex.assert_trees_all_equal_shapes(stacked, random_params(scanned, x))
    chex.assert_trees_all_close(apply(scanned, stacked, x), apply(plain, params, x), atol=1e-5)

    def grads(model, p):
        return jax.grad(lambda q: jnp.sum(apply(model, q, x) ** 2))(p)

    want = unflatten(stack_blocks(flatten(grads(plain, params))))
    chex.assert_trees_all_close(grads(scanned, stacked), want, atol=1e-4, rtol=1e-4)


def test_remat_policies_keep_what_they_name():
    """The backward pass's residuals (the leaves of ``jax.vjp``'s function): full remat keeps the
    fewest bytes, the dense layers' outputs more, every matmul's (attention's too) more still,
    and no remat the most."""
    x = images(32)

    def residual_bytes(remat, policy):
        model = tiny(num_classes=4, scan=True, remat=remat, remat_policy=policy)
        _, vjp = jax.vjp(lambda p: apply(model, p, x), random_params(model, x))
        return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(vjp))

    order = [(True, "nothing_saveable"), (True, "dots_with_no_batch_dims_saveable"),
             (True, "dots_saveable"), (False, None)]  # fmt: skip
    sizes = [residual_bytes(*remat) for remat in order]
    assert sizes == sorted(set(sizes)), sizes  # strictly rising
    assert residual_bytes(True, None) == sizes[0]  # no policy: nn.remat's, keep nothing
    # XLA's attention is no fused kernel: the attention-keeping policy keeps the dense outputs only
    attention = residual_bytes(True, "dots_with_no_batch_dims_and_attention_saveable")
    assert attention == sizes[1]


@pytest.mark.parametrize("scan", [False, True])
def test_attention_policy_runs_the_fused_forward_once(cudnn_traces, scan):
    """cuDNN attention's kernels in a rematerialised step's gradient, traced (not run: the CPU has
    no cuDNN; ``cudnn_traces`` in conftest.py). Keeping only the dense layers' outputs runs each
    fused forward again in the backward pass; keeping the attention's results too runs it once
    per backward kernel. The names counted are jax's (private) primitives', those the policy
    matches: were they renamed, the count would be 0 and this test would fail."""
    x = images(32)

    def kernels(policy):
        model = tiny(
            num_classes=4, dtype=jnp.bfloat16, attn_implementation="cudnn", scan=scan,
            remat=True, remat_policy=policy,
        )  # fmt: skip
        params = random_params(model, x)
        jaxpr = jax.make_jaxpr(jax.grad(lambda p: jnp.sum(apply(model, p, x))))(params)
        names = [eqn.primitive.name for eqn in equations(jaxpr.jaxpr)]
        return (
            names.count("dot_product_attention_fwd_wrapper"),
            names.count("dot_product_attention_bwd_wrapper"),
        )

    forward, backward = kernels("dots_with_no_batch_dims_saveable")
    assert backward >= 1 and forward == 2 * backward
    assert kernels("dots_with_no_batch_dims_and_attention_saveable") == (backward, backward)


def test_remat_policy_is_checked():
    with pytest.raises(ValueError, match=r"unknown remat_policy 'dots'; choose from \("):
        tiny(scan=True, remat=True, remat_policy="dots")
    with pytest.raises(ValueError, match="remat_policy 'dots_saveable' would be ignored: it needs"):
        tiny(scan=True, remat_policy="dots_saveable")


def test_bf16_compute_with_f32_params():
    x = images(32)
    f32 = tiny(num_classes=4)
    bf16 = tiny(num_classes=4, dtype=jnp.bfloat16)
    shapes = jax.eval_shape(bf16.init, RNG, x)["params"]
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(shapes))
    params = random_params(bf16, x)
    out = apply(bf16, params, x)
    assert out.dtype == jnp.float32
    ref = apply(f32, params, x)
    scale = float(jnp.abs(ref).max())
    chex.assert_trees_all_close(out, ref, atol=0.05 * scale)
    assert not np.allclose(out, ref, atol=1e-6)  # it really computed in bf16


def test_drop_path_function():
    x = jnp.ones((1000, 3, 2))
    y = drop_path(x, 0.25, rng=jax.random.PRNGKey(3))
    kept = np.asarray(y[:, 0, 0]) != 0
    np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.75)  # survivors scaled by 1/(1-rate)
    assert np.all(np.asarray(y)[~kept] == 0)  # whole samples dropped
    assert 0.68 < kept.mean() < 0.82


def test_drop_path_rates_rise_linearly_from_the_first_block():
    """timm's stochastic depth: block i of n drops at rate max_rate * i / (n - 1)."""
    x = images(32)
    model = vit("Ti", patch=PATCH, depth=4, num_classes=4, drop_path_rate=0.3)
    params = random_params(model, x)
    rates = calls_of(
        Encoder1DBlock, lambda block, args: float(args[1]),
        lambda: model.apply({"params": params}, x, train=True, rngs={"dropout": RNG}),
    )  # fmt: skip
    np.testing.assert_allclose(rates, [0.0, 0.1, 0.2, 0.3], rtol=1e-6)


@pytest.mark.parametrize("scan", [False, True])
def test_each_block_drops_at_its_rate_with_its_own_rng(monkeypatch, scan):
    """Scanned or not, block i's two branches drop at rate max_rate * i / (depth - 1), each
    with its own dropout key (blocks sharing one would drop the same samples everywhere).
    The spy sees them through a pure callback whose result the dropout uses (flax >= 0.12.10
    refuses an effect, jax.debug.callback, in an nn.scan body that reads the scanned rates); it
    reads the branch too, so the calls run in the blocks' order."""
    seen = []
    real = vit_module.drop_path

    def record(rate, key, branch):
        seen.append((float(rate), tuple(np.asarray(key).ravel().tolist())))
        return key

    def spy(x, rate, *, rng):
        typed = jnp.issubdtype(rng.dtype, jax.dtypes.prng_key)
        key = jax.random.key_data(rng) if typed else rng
        key = jax.pure_callback(record, jax.ShapeDtypeStruct(key.shape, key.dtype), rate, key, x)
        rng = jax.random.wrap_key_data(key, impl=jax.random.key_impl(rng)) if typed else key
        return real(x, rate, rng=rng)

    monkeypatch.setattr(vit_module, "drop_path", spy)
    model = tiny(num_classes=2, drop_path_rate=0.4, scan=scan)
    x = images(16)
    train = jax.jit(lambda p: model.apply(p, x, train=True, rngs={"dropout": RNG}))
    jax.block_until_ready(train({"params": random_params(model, x)}))
    np.testing.assert_allclose([r for r, _ in seen], [0.0, 0.0, 0.4, 0.4], rtol=1e-6)
    assert len({k for _, k in seen}) == 4


@pytest.mark.parametrize("scan", [False, True])
def test_drop_path_train_only(scan):
    x = images(32)
    model = tiny(num_classes=4, drop_path_rate=0.5, scan=scan)
    no_drop = tiny(num_classes=4, scan=scan)
    params = random_params(model, x)
    evaluated = apply(model, params, x)
    chex.assert_trees_all_close(evaluated, apply(no_drop, params, x))
    trained = [
        model.apply({"params": params}, x, train=True, rngs={"dropout": jax.random.PRNGKey(s)})
        for s in range(4)
    ]
    assert any(not np.allclose(t, evaluated) for t in trained)
    assert any(not np.allclose(t, trained[0]) for t in trained[1:])


# -------------------------------------------------------------------------- attention


def test_attention_ignores_padded_keys():
    x = jax.random.normal(RNG, (2, 13, 24))  # 13 tokens, padded to 16
    plain = MultiHeadDotProductAttention(num_heads=3)
    masked = MultiHeadDotProductAttention(num_heads=3, implementation="xla", num_keys=13)
    padded = pad_tokens(x, 16)
    chex.assert_shape(padded, (2, 16, 24))
    np.testing.assert_array_equal(padded[:, 13:], 0.0)
    params = plain.init(RNG, x)

    def value_and_grad(module, inputs):
        loss = lambda p: jnp.sum(module.apply(p, inputs)[:, :13] ** 2)
        return jax.jit(jax.value_and_grad(loss))(params)

    out = masked.apply(params, padded)
    assert np.isfinite(np.asarray(out)).all()  # the padded rows are real (unread) rows
    chex.assert_trees_all_close(out[:, :13], plain.apply(params, x), atol=1e-5)
    chex.assert_trees_all_close(
        value_and_grad(masked, padded), value_and_grad(plain, x), atol=1e-5, rtol=1e-5
    )
    # junk in the padded rows changes nothing in the real ones
    junk = padded.at[:, 13:].set(7.0)
    chex.assert_trees_all_close(masked.apply(params, junk)[:, :13], out[:, :13], atol=1e-5)


def test_cudnn_path_passes_the_real_key_count(monkeypatch):
    """The cuDNN call, run here through XLA's kernel with the very same arguments (cuDNN needs
    a GPU): every query attends to the first ``num_keys`` keys only, never to the padding."""
    real = jax.nn.dot_product_attention

    def through_xla(*args, implementation=None, **kwargs):
        assert implementation == "cudnn"
        return real(*args, implementation="xla", **kwargs)

    monkeypatch.setattr(jax.nn, "dot_product_attention", through_xla)
    q, k, v = (jax.random.normal(key, (2, 16, 3, 8)) for key in jax.random.split(RNG, 3))
    q, k, v = (t.astype(jnp.bfloat16) for t in (q, k, v))
    out = masked_dot_product_attention(q, k, v, num_keys=13, implementation="cudnn")
    qf, kf, vf = (np.asarray(t, np.float64) for t in (q, k, v))
    logits = np.einsum("bqhd,bkhd->bhqk", qf, kf[:, :13]) / np.sqrt(8)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    want = np.einsum("bhqk,bkhd->bqhd", weights, vf[:, :13])
    np.testing.assert_allclose(np.asarray(out, np.float64), want, atol=3e-2)


@pytest.mark.parametrize(
    "options", [dict(), dict(implementation="xla", num_keys=13), dict(num_queries=2)]
)
def test_attention_matches_softmax_reference_with_a_key_bias(options):
    """The module leaves the key bias out (softmax cancels it) and folds the value bias into the
    out projection: its output equals the float64 textbook attention, which adds both, the key
    bias's gradient is 0 and the query and value biases get theirs."""
    x = jax.random.normal(RNG, (2, 16, 24))
    module = MultiHeadDotProductAttention(num_heads=3, **options)
    params = jax.tree.map(lambda s: s + 0.5, module.init(RNG, x))  # every bias non-zero
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    attn = {"q": p["query"], "k": p["key"], "v": p["value"], "o": p["out"]}
    want = np_attention(
        np.asarray(x, np.float64), attn, options.get("num_queries"), options.get("num_keys")
    )
    chex.assert_trees_all_close(module.apply(params, x), want.astype(np.float32), atol=2e-5)
    grads = jax.grad(lambda q: jnp.sum(module.apply(q, x) ** 2))(params)["params"]
    np.testing.assert_array_equal(grads["key"]["bias"], 0.0)
    assert np.abs(grads["query"]["bias"]).min() > 0 and np.abs(grads["value"]["bias"]).min() > 0


@pytest.mark.parametrize(
    ("tokens", "batch", "cudnn_length"),
    [
        (197, 1, 198), (197, 32, 198), (197, 256, 198), (197, 512, 198),  # ViT-B/16 at 224
        (197, 64, 200), (197, 128, 200), (197, 192, 200),  # 64 x 200 = 25 x 512 rows
        (257, 64, 258), (257, 1024, 258),  # DINOv2-S/14: 260 and 262 fit no better at 64
        (198, 64, 200), (198, 256, 198), (50, 64, 50), (49, 1, 50),
        (197, None, 198), (198, None, 198), (257, None, 258),  # no training step: no row rule
    ],
)  # fmt: skip
def test_cudnn_padding_is_even_and_fills_row_multiples(tokens, batch, cudnn_length):
    """cuDNN trains only on even lengths; every padded row costs matmul time, so the default pads
    to the shortest even length, or in a training step further (at most 2%) where that makes the
    device's rows a multiple of 512 (its split-K weight-gradient GEMMs pad them otherwise)."""
    length = padded_length(tokens, "cudnn", None, batch)
    assert length == cudnn_length
    assert length % 2 == 0 and length <= tokens * 1.02 + 1
    if length > tokens + tokens % 2:
        assert batch is not None and batch * length % ROW_MULTIPLE == 0
    chex.assert_shape(pad_tokens(jnp.ones((1, tokens, 4)), length), (1, cudnn_length, 4))
    assert padded_length(tokens, "xla", None, batch) == tokens
    assert padded_length(tokens, None, None, batch) == tokens
    assert padded_length(tokens, "cudnn", 16, batch) == -(-tokens // 16) * 16  # given: kept


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((197, "cudnn", 0, 1), "pad_to must be >= 1"),
        ((0, "cudnn", None, 1), "num_tokens and local_batch >= 1"),
        ((197, "cudnn", None, 0), "num_tokens and local_batch >= 1"),
    ],
)
def test_padded_length_refuses_bad_input(args, error):
    with pytest.raises(ValueError, match=error):
        padded_length(*args)
    with pytest.raises(ValueError, match="cannot pad 5 tokens to 4"):
        pad_tokens(jnp.ones((1, 5, 2)), 4)


@pytest.mark.parametrize(("shards", "batch", "local"), [(1, 256, 256), (4, 256, 64), (3, 256, 256)])
def test_per_device_splits_over_the_mesh_in_context(shards, batch, local):
    """The trainer's step is traced under its data mesh: a device holds batch / mesh size
    examples (whole where the mesh does not divide the batch), and that sets the padding."""
    assert per_device(batch) == batch  # no mesh in context (one CPU device)
    mesh = AbstractMesh((shards,), ("data",), axis_types=(AxisType.Explicit,))
    with jax.sharding.use_abstract_mesh(mesh):
        assert per_device(batch) == local
        want = 200 if local == 64 else 198
        assert padded_length(197, "cudnn", None, per_device(batch)) == want


def test_attention_with_fewer_queries_is_their_rows_of_self_attention():
    """num_queries=2 of 13 tokens (3 padded): the first two rows of full self-attention, in XLA
    even when cuDNN is asked for (this runs on the CPU, where cuDNN would fail)."""
    x = jax.random.normal(RNG, (2, 16, 24)).astype(jnp.bfloat16)
    full = MultiHeadDotProductAttention(num_heads=3, dtype=jnp.bfloat16, num_keys=13)
    two = MultiHeadDotProductAttention(
        num_heads=3, dtype=jnp.bfloat16, implementation="cudnn", num_keys=13, num_queries=2
    )
    params = full.init(RNG, x)
    out = two.apply(params, x)
    chex.assert_shape(out, (2, 2, 24))
    chex.assert_trees_all_close(
        out.astype(jnp.float32), full.apply(params, x)[:, :2].astype(jnp.float32), atol=2e-2
    )
    for bad in (0, 17):
        with pytest.raises(ValueError, match="num_queries must be in"):
            MultiHeadDotProductAttention(num_heads=3, num_queries=bad).apply(params, x)


def test_attention_takes_every_key_and_every_query_at_the_boundaries():
    """num_keys = N and num_queries = N are in their ranges [1, N]: plain self-attention. A
    width that the heads do not divide is refused."""
    q, k, v = np.random.default_rng(0).normal(size=(3, 2, 6, 3, 4)).astype(np.float32)
    chex.assert_trees_all_close(
        masked_dot_product_attention(q, k, v, num_keys=6), masked_dot_product_attention(q, k, v)
    )
    x = np.random.default_rng(1).normal(size=(2, 6, 24)).astype(np.float32)
    plain = MultiHeadDotProductAttention(num_heads=3)
    params = {"params": random_params(plain, x)}
    want = jax.jit(plain.apply)(params, x)
    for options in (dict(implementation="xla", num_keys=6), dict(num_queries=6)):
        module = MultiHeadDotProductAttention(num_heads=3, **options)
        chex.assert_trees_all_close(jax.jit(module.apply)(params, x), want, atol=1e-6)
    with pytest.raises(ValueError, match="width 24 is not divisible by num_heads 5"):
        jax.eval_shape(MultiHeadDotProductAttention(num_heads=5).init, RNG, x)


def test_masked_attention_rejects_bad_key_count():
    q = jnp.zeros((1, 4, 2, 8))
    with pytest.raises(ValueError, match="num_keys must be in"):
        masked_dot_product_attention(q, q, q, num_keys=0)


@pytest.mark.parametrize("pool", ["tok", "gap", "none"])
@pytest.mark.parametrize("scan", [False, True])
def test_vit_with_padded_tokens_equals_unpadded(pool, scan):
    """The token sequence padded once (10 -> 16 tokens) and masked: outputs and gradients of
    the unpadded model."""
    x = images(48)  # 9 patches + cls = 10 tokens
    plain = tiny(num_classes=0 if pool == "none" else 3, pool=pool, scan=scan)
    padded = tiny(
        num_classes=0 if pool == "none" else 3, pool=pool, scan=scan,
        attn_implementation="xla", attn_pad_to=16,
    )  # fmt: skip
    params = random_params(plain, x)
    chex.assert_trees_all_close(apply(padded, params, x), apply(plain, params, x), atol=1e-5)

    def grads(model):
        return jax.jit(jax.grad(lambda p: jnp.sum(apply(model, p, x) ** 2)))(params)

    chex.assert_trees_all_close(grads(padded), grads(plain), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("shards", "train", "length"), [(None, True, 200), (None, False, 198), (2, True, 198)]
)
def test_vit_pads_a_training_step_to_row_multiples(monkeypatch, shards, train, length):
    """With cuDNN's default padding a training step of 64 examples on one device runs on 200
    tokens (64 x 200 rows, a multiple of 512); inference, and 32 examples per device under a
    2-device data mesh (the trainer's context), on 198; the logits are the same. cuDNN does not
    run on the CPU: its calls run XLA's kernel on the same padded, masked tokens."""
    xla = attention.masked_dot_product_attention
    monkeypatch.setattr(
        attention, "masked_dot_product_attention",
        lambda *args, implementation=None, **kw: xla(*args, implementation="xla", **kw),
    )  # fmt: skip
    x = images(224, batch=64)  # 196 patches + cls = 197 tokens
    padded = vit("Ti", patch=PATCH, depth=2, num_classes=3, attn_implementation="cudnn")
    params = random_params(vit("Ti", patch=PATCH, depth=2, num_classes=3), x[:1])
    mesh = AbstractMesh((shards,), ("data",), axis_types=(AxisType.Auto,)) if shards else None
    with jax.sharding.use_abstract_mesh(mesh) if mesh else contextlib.nullcontext():
        logits, state = padded.apply(
            {"params": params}, x, train=train, capture_intermediates=True,
            mutable=["intermediates"],
        )  # fmt: skip
    mlp_input = state["intermediates"]["Transformer"]["encoderblock_0"]["MlpBlock_0"]["__call__"]
    chex.assert_shape(mlp_input[0], (64, length, 192))
    plain = vit("Ti", patch=PATCH, depth=2, num_classes=3)
    chex.assert_trees_all_close(logits, apply(plain, params, x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("num_keys", [None, 13])
def test_cudnn_attention_traces_under_vmap_over_weights(monkeypatch, num_keys):
    """The search vmaps over subnets' weights alone: keys and values of a bias-less projection
    carry the mapped axis after (B, N), where cuDNN's batching rule refuses it, and its padding
    lengths must be mapped too. cuDNN does not run on the CPU: its checks are patched to trace."""
    from jax._src.cudnn import fused_attention_stablehlo as fused

    monkeypatch.setattr(fused, "check_cudnn_version", lambda *args, **kwargs: None)
    monkeypatch.setattr(fused, "check_compute_capability", lambda *args, **kwargs: True)
    x = jnp.ones((2, 14, 16), jnp.bfloat16)

    def attend(w: jax.Array) -> jax.Array:
        q, k, v = (jnp.einsum("bnd,dhe->bnhe", x, w * i) for i in (1, 2, 3))
        return attention.masked_dot_product_attention(
            q, k, v, num_keys=num_keys, implementation="cudnn"
        )

    weights = jnp.ones((3, 16, 2, 8), jnp.bfloat16)
    assert "dot_product_attention" in str(jax.make_jaxpr(jax.vmap(attend))(weights))
    chex.assert_shape(jax.eval_shape(jax.vmap(attend), weights), (3, 2, 14, 2, 8))


def test_cudnn_needs_half_precision():
    with pytest.raises(ValueError, match="needs bfloat16/float16"):
        random_params(tiny(attn_implementation="cudnn"), jnp.zeros((1, 32, 32, 3)))


# ------------------------------------------------------------------------ checkpoints


def to_legacy_key(key: str) -> str:
    """Our key -> google-research/vision_transformer's pre-linen name."""
    if key == "pos_embedding":
        return "Transformer/posembed_input/pos_embedding"
    for ours, legacy in (
        ("MultiHeadDotProductAttention_0", "MultiHeadDotProductAttention_1"),
        ("LayerNorm_1", "LayerNorm_2"),
        ("MlpBlock_0", "MlpBlock_3"),
    ):
        key = re.sub(rf"^(Transformer/encoderblock_\d+)/{ours}/", rf"\1/{legacy}/", key)
    return key


def layouts(flat: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    linen = {
        ("Transformer/posembed_input/pos_embedding" if k == "pos_embedding" else k): v
        for k, v in flat.items()
    }
    return {
        "ours": flat,
        "linen": linen,
        "pre-linen": {to_legacy_key(k): v for k, v in flat.items()},
        "ours-scanned": stack_blocks(flat),
    }


@pytest.fixture(scope="module")
def trained_tiny():
    """(model, params with random values, flat numpy params, images) of a tiny classifier."""
    model = tiny(num_classes=3, representation_size=8)
    x = images(32)
    params = random_params(model, x)
    return model, params, {k: np.asarray(v) for k, v in flatten(params).items()}, x


def test_pre_logits_is_a_tanh_dense_layer_before_the_head(trained_tiny):
    """logits = tanh(f W_p + b_p) W_h + b_h, f the pooled, normed features (big_vision's
    pre_logits), in numpy from the features model's output."""
    model, params, flat, x = trained_tiny
    features = {k: v for k, v in params.items() if k not in ("pre_logits", "head")}
    f = np.asarray(apply(tiny(num_classes=0), features, x), np.float64)
    hidden = np.tanh(f @ flat["pre_logits/kernel"] + flat["pre_logits/bias"])
    want = hidden @ flat["head/kernel"] + flat["head/bias"]
    np.testing.assert_allclose(np.asarray(apply(model, params, x)), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layout", ["ours", "linen", "pre-linen", "ours-scanned"])
@pytest.mark.parametrize("scan", [False, True])
def test_npz_round_trip(tmp_path, trained_tiny, layout, scan):
    model, params, flat, x = trained_tiny
    path = tmp_path / "ckpt.npz"
    np.savez(path, **layouts(flat)[layout])
    target = tiny(num_classes=3, representation_size=8, scan=scan)
    loaded = load_params(path, random_params(target, x, seed=5))
    want = unflatten(stack_blocks(flat)) if scan else params
    chex.assert_trees_all_equal(loaded, want)
    chex.assert_trees_all_close(apply(target, loaded, x), apply(model, params, x), atol=1e-5)


def test_legacy_key_names(trained_tiny):
    flat = trained_tiny[2]
    legacy = layouts(flat)["pre-linen"]
    assert "Transformer/posembed_input/pos_embedding" in legacy
    assert "Transformer/encoderblock_1/MultiHeadDotProductAttention_1/query/kernel" in legacy
    assert "Transformer/encoderblock_0/LayerNorm_2/scale" in legacy
    assert "Transformer/encoderblock_0/MlpBlock_3/Dense_1/bias" in legacy


def test_save_npz_metadata(tmp_path, trained_tiny):
    _, params, flat, _ = trained_tiny
    path = save_npz(params, tmp_path / "sub" / "m.npz", metadata={"image_size": 32})
    assert npz_metadata(path) == {"image_size": 32}
    chex.assert_trees_all_equal(load_npz(path), flat)


def test_head_replacement(trained_tiny):
    _, _, flat, x = trained_tiny
    other = tiny(num_classes=5, representation_size=8)
    init_params = random_params(other, x, seed=7)
    loaded = load_params(flat, init_params)  # head shape differs -> fresh
    chex.assert_trees_all_equal(loaded["head"], init_params["head"])
    np.testing.assert_array_equal(loaded["pre_logits"]["kernel"], flat["pre_logits/kernel"])
    same = tiny(num_classes=3, representation_size=8)
    init_same = random_params(same, x, seed=8)
    kept = load_params(flat, init_same)
    np.testing.assert_array_equal(kept["head"]["kernel"], flat["head/kernel"])
    dropped = load_params(flat, init_same, drop_head=True)
    chex.assert_trees_all_equal(dropped["head"], init_same["head"])
    np.testing.assert_array_equal(dropped["pre_logits"]["kernel"], flat["pre_logits/kernel"])
    headless = load_params(
        flat, random_params(tiny(), x)
    )  # features model ignores head and pre_logits
    assert set(headless) == {"embedding", "cls", "pos_embedding", "Transformer"}


def test_posemb_resample_and_cls_handling(trained_tiny):
    _, _, flat, _ = trained_tiny
    bigger = tiny(num_classes=3, representation_size=8)
    loaded = load_params(flat, random_params(bigger, images(64)))  # grid 2x2 -> 4x4
    pos = loaded["pos_embedding"]
    chex.assert_shape(pos, (1, 17, 192))
    np.testing.assert_array_equal(pos[:, 0], flat["pos_embedding"][:, 0])  # cls row kept
    grid = flat["pos_embedding"][0, 1:].reshape(2, 2, 192)
    np.testing.assert_allclose(
        pos[0, 1:].reshape(4, 4, 192)[[0, 0, -1, -1], [0, -1, 0, -1]],
        grid[[0, 0, -1, -1], [0, -1, 0, -1]],
        rtol=1e-6,
    )  # corners
    same = load_params(flat, random_params(bigger, images(32)))
    np.testing.assert_array_equal(same["pos_embedding"], flat["pos_embedding"])
    no_cls = tiny(pool="gap", class_token=False)
    gap = load_params(flat, random_params(no_cls, images(32)))
    np.testing.assert_array_equal(gap["pos_embedding"], flat["pos_embedding"][:, 1:])
    assert "cls" not in gap


@pytest.mark.parametrize("sizes", [(2, 4), (5, 3), (7, 12), (37, 16)])
def test_bilinear_matches_scipy_zoom(sizes):
    ndimage = pytest.importorskip("scipy.ndimage")
    n_in, n_out = sizes
    grid = np.random.default_rng(0).normal(size=(n_in, n_in, 4)).astype(np.float32)
    want = ndimage.zoom(grid, (n_out / n_in, n_out / n_in, 1), order=1)
    got = resample_grid(grid, (n_out, n_out), method="bilinear")
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize(("shape", "new_shape"), [((3, 5), (6, 4)), ((4, 2), (2, 7))])
def test_bilinear_resamples_each_axis_to_its_own_size(shape, new_shape):
    ndimage = pytest.importorskip("scipy.ndimage")
    grid = np.random.default_rng(0).normal(size=(*shape, 4)).astype(np.float32)
    zoom = (new_shape[0] / shape[0], new_shape[1] / shape[1], 1)
    got = resample_grid(grid, new_shape, method="bilinear")
    np.testing.assert_allclose(got, ndimage.zoom(grid, zoom, order=1), atol=1e-6)


@pytest.mark.parametrize("sizes", [(37, 16), (16, 24), (7, 12), (5, 5)])
def test_bicubic_matches_onnx_resize(sizes):
    """torch bicubic (a=-0.75, half-pixel, no antialias) as exported to ONNX Resize."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    n_in, n_out = sizes
    grid = np.random.default_rng(0).normal(size=(n_in, n_in, 3)).astype(np.float32)
    h = onnx.helper
    node = h.make_node(
        "Resize",
        ["x", "", "", "sizes"],
        ["y"],
        mode="cubic",
        coordinate_transformation_mode="half_pixel",
        cubic_coeff_a=-0.75,
    )
    graph = h.make_graph(
        [node],
        "resize",
        [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, n_in, n_in])],
        [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [h.make_tensor("sizes", onnx.TensorProto.INT64, [4], [1, 3, n_out, n_out])],
    )
    # the IR version opset 14 needs, not onnx's newest (onnxruntime 1.30 refuses onnx 1.23's 14)
    opsets = [h.make_opsetid("", 14)]
    model = h.make_model(graph, opset_imports=opsets, ir_version=h.find_min_ir_version_for(opsets))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, {"x": grid.transpose(2, 0, 1)[None]})[0][0].transpose(1, 2, 0)
    got = resample_grid(grid, (n_out, n_out), method="bicubic")
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_loader_lists_missing_unexpected_and_misshaped(trained_tiny):
    _, _, flat, x = trained_tiny
    broken = dict(flat)
    del broken["Transformer/encoderblock_1/LayerNorm_0/bias"]
    broken["Transformer/encoderblock_0/extra/kernel"] = np.zeros(3)
    broken["embedding/bias"] = np.zeros(7)
    with pytest.raises(CheckpointMismatchError) as err:
        load_params(broken, random_params(tiny(num_classes=3, representation_size=8), x))
    message = str(err.value)
    assert "missing (1): Transformer/encoderblock_1/LayerNorm_0/bias" in message
    assert "unexpected (1): Transformer/encoderblock_0/extra/kernel" in message
    assert "mis-shaped: embedding/bias: checkpoint (7,), model (192,)" in message
    layer_scale = tiny(num_classes=3, representation_size=8, layer_scale=1.0)
    with pytest.raises(CheckpointMismatchError, match="encoderblock_0/ls1"):
        load_params(flat, random_params(layer_scale, x))


@pytest.mark.parametrize(
    ("source", "size", "options", "error", "match"),
    [
        (lambda flat, tmp: tmp / "absent.npz", (32, 32), {}, FileNotFoundError,
         r"no checkpoint at .*absent\.npz; download e\.g\. ViT-B_16\.npz"),
        # 64 pixels: the checkpoint's 2 x 2 grid is resampled to 4 x 4
        (lambda flat, tmp: flat, (64, 64), {"posemb_method": "nearest"}, ValueError,
         "posemb method must be 'bilinear' or 'bicubic', got 'nearest'"),
        # 32 pixels: the grid is already 2 x 2, and the method is still checked
        (lambda flat, tmp: flat, (32, 32), {"posemb_method": "nearest"}, ValueError,
         "posemb method must be 'bilinear' or 'bicubic', got 'nearest'"),
        (lambda flat, tmp: {**flat, "pos_embedding": flat["pos_embedding"][:, :4]}, (32, 32), {},
         ValueError,
         "the pos_embedding of the checkpoint has 3 patch positions, not a square grid"),
        (lambda flat, tmp: flat, (32, 48), {}, ValueError,
         "the pos_embedding of the model has 6 patch positions, not a square grid; give "
         "load_params its image_size"),
    ],
    ids=["missing_file", "posemb_method", "posemb_method_unused", "checkpoint_grid", "model_grid"],
)  # fmt: skip
def test_loader_refuses_a_missing_file_an_unknown_resampling_and_a_non_square_grid(
    trained_tiny, tmp_path, source, size, options, error, match
):
    model = tiny(num_classes=3, representation_size=8)
    init = jax.eval_shape(model.init, RNG, jnp.zeros((1, *size, 3)))["params"]
    with pytest.raises(error, match=match):
        load_params(source(trained_tiny[2], tmp_path), init, **options)


def posemb_checkpoint(flat: dict, grid: tuple[int, int], seed: int = 3) -> dict:
    """``flat`` with a random pos_embedding (class token row + a ``grid`` of patch rows)."""
    rows = 1 + grid[0] * grid[1]
    posemb = np.random.default_rng(seed).normal(size=(1, rows, 192)).astype(np.float32)
    return {**flat, "pos_embedding": posemb}


@pytest.mark.parametrize(
    ("grid", "recorded", "size", "given"),
    [((2, 8), [32, 128], (64, 64), None),  # 16 positions both: nothing resampled before
     ((8, 32), [128, 512], (64, 64), None),  # 256 positions: read as 16 x 16 before
     ((3, 3), 48, (32, 64), (32, 64)),  # a wide model's grid, from its image_size
     ((2, 4), [32, 64], (64, 32), (64, 32))],
    ids=["same_count", "read_as_square", "wide_model", "tall_model"],
)  # fmt: skip
def test_a_grid_recorded_in_the_metadata_and_the_models_image_size_set_the_resampling(
    tmp_path, trained_tiny, grid, recorded, size, given
):
    """A flat count of positions does not say the grid: the checkpoint's is that of its
    metadata's image_size (in its patches), the model's that of the image_size given."""
    flat = posemb_checkpoint(trained_tiny[2], grid)
    path = save_npz(unflatten(flat), tmp_path / "wide.npz", metadata={"image_size": recorded})
    model = tiny(num_classes=3, representation_size=8)
    init = random_params(model, np.zeros((1, *size, 3), np.float32))
    options = {} if given is None else {"image_size": given}
    loaded = load_params(path, init, **options)["pos_embedding"]
    new_grid = (size[0] // PATCH, size[1] // PATCH)
    want = resample_grid(flat["pos_embedding"][0, 1:].reshape(*grid, 192), new_grid,
                         method="bilinear")  # fmt: skip
    np.testing.assert_array_equal(loaded[:, 0], flat["pos_embedding"][:, 0])
    np.testing.assert_allclose(loaded[0, 1:].reshape(*new_grid, 192), want, rtol=1e-6)


@pytest.mark.parametrize("size", [np.int64(64), (np.int32(64), np.int64(64))])
def test_a_numpy_integer_image_size_sets_the_models_grid(trained_tiny, size):
    """image_size=np.int64(64) (a side read from an array or an npz) raised "cannot unpack
    non-iterable numpy.int64 object": only a Python int was taken for a side."""
    init = random_params(tiny(num_classes=3, representation_size=8), images(64))
    loaded = load_params(trained_tiny[2], init, image_size=size)["pos_embedding"]
    chex.assert_shape(loaded, (1, 1 + 4 * 4, 192))


@pytest.mark.parametrize(
    ("grid", "metadata", "given", "match"),
    [((2, 3), None, None,
      r"^the pos_embedding of checkpoint {path} has 6 patch positions, not a square grid; "
      r"record its image size in its npz metadata \("),
     ((2, 4), {"image_size": [32, 32]}, None,
      r"^the pos_embedding of checkpoint {path} has 8 patch positions, which 32x32 images in "
      r"16x16 patches do not make \(a 2x2 grid\)$"),
     ((2, 4), {"image_size": [32, 72]}, None, "which 32x72 images in 16x16 patches do not make"),
     ((2, 4), {"image_size": [40, 64]}, None, "which 40x64 images in 16x16 patches do not make"),
     ((2, 4), {"image_size": "32x64"}, None,
      r"^checkpoint {path}: metadata image_size must be an int or \[height, width\] of ints >= 1, "
      r"got '32x64'$"),
     ((2, 4), {"image_size": [32, 64, 3]}, None, "metadata image_size must be an int or"),
     ((2, 4), {"image_size": [-32, -64]}, None, "metadata image_size must be an int or"),
     ((2, 4), {"image_size": [True, 64]}, None, "metadata image_size must be an int or"),
     ((2, 4), {"image_size": [32, 64]}, (64, 32),
      r"^the pos_embedding of the model has 16 patch positions, which 64x32 images in 16x16 "
      r"patches do not make \(a 4x2 grid\)$")],
    ids=["no_square", "recorded_other_count", "recorded_no_multiple",
         "recorded_no_multiple_height", "recorded_text", "recorded_three_sides",
         "recorded_negative", "recorded_bool", "model_other_grid"],
)  # fmt: skip
def test_a_grid_that_cannot_be_known_is_refused_naming_the_checkpoint(
    tmp_path, trained_tiny, grid, metadata, given, match
):
    """Not read as some square grid of as many positions (2 x 3 as ... none; 2 x 4 as 2 x 2)."""
    path = save_npz(
        unflatten(posemb_checkpoint(trained_tiny[2], grid)), tmp_path / "c.npz", metadata=metadata
    )
    init = random_params(tiny(num_classes=3, representation_size=8), images(64))
    options = {} if given is None else {"image_size": given}
    with pytest.raises(ValueError, match=match.format(path=re.escape(str(path)))):
        load_params(path, init, **options)


@pytest.mark.parametrize(
    ("image_size", "patch", "tokens", "grid"),
    [((64, 32), (16, 8), 16, (4, 4)), ((32, 64), (8, 16), 16, (4, 4)),
     ((32, 64), (16, 8), 16, (2, 8)), (48, (16, 8), 18, (3, 6)),
     (np.int64(48), (8, 16), 18, (6, 3))],
)  # fmt: skip
def test_image_grid_divides_each_side_by_its_own_patch_side(image_size, patch, tokens, grid):
    """Height by the patch's height, width by its width (a grid of rows, columns)."""
    assert image_grid(image_size, patch, tokens, what="x") == grid
    assert checkpoint_grid({"image_size": image_size if isinstance(image_size, tuple)
                            else int(image_size)}, patch, tokens, named="c") == grid  # fmt: skip
    with pytest.raises(ValueError, match=f"^x has {tokens + 1} patch positions, which"):
        image_grid(image_size, patch, tokens + 1, what="x")


def test_a_checkpoint_grid_is_read_in_its_own_patches(tmp_path, trained_tiny):
    """A checkpoint of 32-pixel patches recorded at 64 pixels has a 2 x 2 grid: its
    pos_embedding is read so (and resampled), and the patch kernel the model cannot take is
    the mismatch named, not a grid of 64 pixels in the model's 16-pixel patches (4 x 4)."""
    flat = posemb_checkpoint(trained_tiny[2], (2, 2))
    flat["embedding/kernel"] = np.zeros((32, 32, 3, 192), np.float32)
    path = save_npz(unflatten(flat), tmp_path / "p32.npz", metadata={"image_size": 64})
    init = random_params(tiny(num_classes=3, representation_size=8), images(64))
    with pytest.raises(CheckpointMismatchError) as refused:
        load_params(path, init, image_size=64)
    assert refused.value.mis_shaped == [("embedding/kernel", (32, 32, 3, 192), (16, 16, 3, 192))]


def test_a_foreign_checkpoint_is_refused_in_a_message_of_a_few_lines(tmp_path, trained_tiny):
    """An npz of another model (here: a data file) misses every key: the message names the
    file and shows the first few keys of each kind, not a wall of every one (the exception's
    lists keep them all)."""
    _, _, flat, x = trained_tiny
    path = tmp_path / "not_a_vit.npz"
    np.savez(path, images=np.zeros((4, 8, 8), np.uint8), labels=np.zeros(4, np.int64))
    with pytest.raises(CheckpointMismatchError) as err:
        load_params(path, random_params(tiny(num_classes=3, representation_size=8), x))
    message = str(err.value)
    assert str(path) in message.splitlines()[0]
    assert len(err.value.missing) > 20
    assert re.search(
        rf"missing \({len(err.value.missing)}\): .*, \.\.\. and \d+ more$", message, re.M
    )
    assert message.count("/") < 60 and len(message) < 2000
    bigger = {k: np.zeros((*v.shape[:-1], v.shape[-1] + 1), v.dtype) for k, v in flat.items()}
    with pytest.raises(CheckpointMismatchError) as err:
        load_params(bigger, random_params(tiny(num_classes=3, representation_size=8), x))
    assert len(err.value.mis_shaped) > 20
    assert len(str(err.value).splitlines()) < 15
    assert str(err.value).endswith("more mis-shaped")


def test_an_unexpected_key_alone_is_a_mismatch(trained_tiny):
    """LayerScale weights (a DINOv2 checkpoint's) for a model without LayerScale."""
    _, _, flat, x = trained_tiny
    extra = {**flat, "Transformer/encoderblock_0/ls1": np.ones(192, np.float32)}
    with pytest.raises(CheckpointMismatchError, match=r"unexpected \(1\): .*encoderblock_0/ls1"):
        load_params(extra, random_params(tiny(num_classes=3, representation_size=8), x))


def test_a_model_with_a_class_token_refuses_a_checkpoint_without_one(trained_tiny):
    _, _, flat, x = trained_tiny
    no_cls = {k: v for k, v in flat.items() if k != "cls"}
    no_cls["pos_embedding"] = flat["pos_embedding"][:, 1:]
    with pytest.raises(CheckpointMismatchError, match=r"missing \(1\): cls"):
        load_params(no_cls, random_params(tiny(num_classes=3, representation_size=8), x))


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_loaded_params_take_the_models_dtypes(trained_tiny, dtype):
    _, params, flat, x = trained_tiny
    cast = {k: v.astype(dtype) for k, v in flat.items()}
    loaded = load_params(cast, random_params(tiny(num_classes=3, representation_size=8), x))
    assert {leaf.dtype for leaf in jax.tree.leaves(loaded)} == {np.dtype(np.float32)}
    chex.assert_trees_all_close(loaded, params, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize(
    ("dtype", "shown"),
    [(np.int8, "int8"), (np.bool_, "bool"), (np.complex64, "complex64"),
     (ml_dtypes.bfloat16, "|V2")],  # numpy stores bfloat16 as 2-byte voids
)  # fmt: skip
def test_a_checkpoint_array_that_is_not_floating_is_refused(tmp_path, trained_tiny, dtype, shown):
    """Not cast to float32 as it comes (int8 or bool values, a complex one's real part)."""
    _, _, flat, x = trained_tiny
    path = tmp_path / "ckpt.npz"
    np.savez(path, **{**flat, "embedding/bias": flat["embedding/bias"].astype(dtype)})
    with pytest.raises(
        CheckpointMismatchError, match=rf"not floating: embedding/bias \({re.escape(shown)}\)$"
    ):
        load_params(path, random_params(tiny(num_classes=3, representation_size=8), x))


def test_stack_blocks_orders_by_block_index_not_by_key_order():
    """ViT-B's 12 blocks listed in string order (a sorted npz's: _10 and _11 before _2)."""
    flat = {f"Transformer/encoderblock_{i}/ls1": np.full(2, i) for i in sorted(range(12), key=str)}
    stacked = stack_blocks(flat)
    np.testing.assert_array_equal(stacked["Transformer/encoderblock/ls1"][:, 0], np.arange(12))
    chex.assert_trees_all_equal(unstack_blocks(stacked), flat)
    with pytest.raises(ValueError, match=r"cannot stack 'ls1': block indices \[0, 2\]"):
        stack_blocks({f"Transformer/encoderblock_{i}/ls1": np.zeros(2) for i in (0, 2)})


def test_loader_rejects_colliding_layouts(trained_tiny):
    flat = dict(trained_tiny[2])
    flat["Transformer/posembed_input/pos_embedding"] = flat["pos_embedding"]
    with pytest.raises(ValueError, match="both map to 'pos_embedding'"):
        load_params(flat, {})


@pytest.mark.parametrize("pad_to", [None, 16])
@pytest.mark.parametrize("train", [False, True])
def test_class_token_pool_runs_the_last_block_on_the_class_token(pad_to, train):
    """pool="tok" forms only the class token's row in the last block; logits and every gradient
    are those of the model computing every token (pool="none", its class-token row)."""
    x = images(48)  # 10 tokens
    options = dict(
        num_classes=3, layer_scale=0.5, drop_path_rate=0.3, attn_implementation="xla",
        attn_pad_to=pad_to,
    )  # fmt: skip
    token, every = tiny(pool="tok", **options), tiny(pool="none", **options)
    params = random_params(token, x)
    rngs = {"dropout": jax.random.PRNGKey(5)}

    def logits(model, p):
        return model.apply({"params": p}, x, train=train, rngs=rngs)

    _, state = token.apply(
        {"params": params}, x, capture_intermediates=True, mutable=["intermediates"]
    )
    blocks = state["intermediates"]["Transformer"]
    chex.assert_shape(
        blocks["encoderblock_0"]["MlpBlock_0"]["__call__"][0], (2, 16 if pad_to else 10, 192)
    )
    chex.assert_shape(blocks["encoderblock_1"]["MlpBlock_0"]["__call__"][0], (2, 1, 192))
    chex.assert_trees_all_close(logits(token, params), logits(every, params)[:, 0], atol=1e-5)

    def grads(model, pick):
        return jax.jit(jax.grad(lambda p: jnp.sum(pick(logits(model, p)) ** 2)))(params)

    chex.assert_trees_all_close(
        grads(token, lambda y: y), grads(every, lambda y: y[:, 0]), atol=1e-4, rtol=1e-4
    )
