"""Vision Transformer (Flax linen) with big_vision's param names.

Param tree (unscanned, ``depth`` blocks, ``D`` = width, ``H`` heads, ``h = D // H``)::

    embedding/{kernel (p, p, 3, D) HWIO, bias (D,)}      patchify conv, stride p
    cls              (1, 1, D)                            only with class_token=True
    pos_embedding    (1, c + gh*gw, D)                    c = 1 with class_token else 0
    Transformer/encoderblock_{i}/
        LayerNorm_0/{scale, bias} (D,)
        MultiHeadDotProductAttention_0/{query,key,value}/{kernel (D, H, h), bias (H, h)}
        MultiHeadDotProductAttention_0/out/{kernel (H, h, D), bias (D,)}
        ls1 (D,)                                          only with layer_scale
        LayerNorm_1/{scale, bias} (D,)
        MlpBlock_0/Dense_0/{kernel (D, mlp), bias (mlp,)}
        MlpBlock_0/Dense_1/{kernel (mlp, D), bias (D,)}
        ls2 (D,)                                          only with layer_scale
    Transformer/encoder_norm/{scale, bias} (D,)
    pre_logits/{kernel (D, R), bias (R,)}                 only with representation_size=R
    head/{kernel (D or R, num_classes), bias}             only with num_classes > 0

With ``scan=True`` the blocks are one ``Transformer/encoderblock/...`` subtree whose leaves have a
leading ``depth`` axis (e.g. ``query/kernel`` (depth, D, H, h)).

Choices: ``pos_embedding`` is top-level as in big_vision, but — as in the original ViT and DINOv2
checkpoints — it also covers the class token and is added after the class token is prepended
(big_vision adds it to the patch tokens only). The DINOv2 LayerScale vectors are plain params
``ls1``/``ls2`` of each block: branch ← branch · ls. Stochastic depth drops a residual branch per
sample with a rate rising linearly from 0 (first block) to ``drop_path_rate`` (last), as in timm.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from einops import rearrange

from experiments.models.activations import gelu
from experiments.models.attention import (
    AttentionImpl,
    MultiHeadDotProductAttention,
    fused_attention_saveable,
    pad_tokens,
    padded_length,
)
from experiments.models.dense import BiasGrad, Dense, check_bias_grad
from experiments.models.drop_path import check_rate, drop_path
from experiments.models.patch_conv import PatchConv
from peft_core.activation_grads import per_device

Pool = Literal["tok", "gap", "none"]


#: What a rematerialised block may keep from the forward pass, by name: the ``jax.checkpoint``
#: policies. Nothing;
#: every matmul output; the outputs of matmuls without batch dimensions, i.e. the dense layers'
#: and not attention's (under a vmap, e.g. GLoRA's K > 1 subnets per step, the dense layers'
#: matmuls get a batch dimension too and are recomputed); those and the fused (cuDNN)
#: attention's output and softmax statistics, so that its forward kernel runs once.
_POLICIES = jax.checkpoint_policies
REMAT_POLICIES: dict[str, Any] = {
    "nothing_saveable": _POLICIES.nothing_saveable,
    "dots_saveable": _POLICIES.dots_saveable,
    "dots_with_no_batch_dims_saveable": _POLICIES.dots_with_no_batch_dims_saveable,
    "dots_with_no_batch_dims_and_attention_saveable": _POLICIES.save_from_both_policies(
        _POLICIES.dots_with_no_batch_dims_saveable, fused_attention_saveable
    ),
}


class VariantSpec(NamedTuple):
    width: int
    depth: int
    mlp_dim: int
    num_heads: int


VARIANTS: dict[str, VariantSpec] = {
    "Ti": VariantSpec(width=192, depth=12, mlp_dim=768, num_heads=3),
    "S": VariantSpec(width=384, depth=12, mlp_dim=1536, num_heads=6),
    "B": VariantSpec(width=768, depth=12, mlp_dim=3072, num_heads=12),
    "L": VariantSpec(width=1024, depth=24, mlp_dim=4096, num_heads=16),
}


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """All knobs of the ViT.

    pool: "tok" = class token, "gap" = mean of the patch tokens, "none" = every token
    (B, N, D). The encoder norm is applied before pooling. With "tok" (and ``scan=False``) the
    last block computes the class token's row only, so its intermediates are (B, 1, ·).
    ``num_classes=0`` returns features (no head). ``gelu_approximate`` is True for the original
    ViT / big_vision, False for DINOv2. ``dtype`` is the compute dtype, ``param_dtype`` the
    storage dtype.
    ``attn_pad_to``: the token sequence is padded once, before the first block, to a multiple of
    it (default: for cuDNN an even length, with ``train`` 200 for 197 tokens where that makes a
    device's rows a multiple of 512, ``attention.padded_length``; none otherwise); attention
    masks the padding.
    ``bias_grad``: how every dense layer forms its bias gradient ("reduce" or "gemv",
    ``experiments.models.dense``).
    ``remat``: rematerialise each block in the backward pass; ``remat_policy`` (with ``remat``)
    names what it may keep instead of recomputing, one of ``REMAT_POLICIES`` (default: nothing,
    flax's ``nn.remat``): "dots_with_no_batch_dims_saveable" keeps the dense layers' outputs
    (not under a vmap, see ``REMAT_POLICIES``) and recomputes the norms, GELU and attention;
    "dots_with_no_batch_dims_and_attention_saveable" keeps cuDNN attention's results too.
    """

    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    patch_size: int
    num_classes: int = 0
    pool: Pool = "tok"
    class_token: bool = True
    representation_size: int | None = None
    drop_path_rate: float = 0.0
    layer_scale: float | None = None
    gelu_approximate: bool = True
    layer_norm_eps: float = 1e-6
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    scan: bool = False
    remat: bool = False
    remat_policy: str | None = None
    attn_implementation: AttentionImpl = None
    attn_pad_to: int | None = None
    bias_grad: BiasGrad = "reduce"

    def __post_init__(self) -> None:
        check_bias_grad(self.bias_grad)
        for name in ("width", "depth", "mlp_dim", "num_heads", "patch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.pool not in ("tok", "gap", "none"):
            raise ValueError(f"pool must be 'tok', 'gap' or 'none', got {self.pool!r}")
        if self.pool == "tok" and not self.class_token:
            raise ValueError("pool='tok' needs class_token=True")
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} not divisible by num_heads {self.num_heads}")
        check_rate("drop_path_rate", self.drop_path_rate)
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {self.num_classes}")
        if self.representation_size is not None and self.representation_size < 1:
            raise ValueError(
                f"representation_size must be None or >= 1, got {self.representation_size}"
            )
        if self.attn_implementation not in (None, "xla", "cudnn"):
            raise ValueError(
                f"attn_implementation must be None, 'xla' or 'cudnn', "
                f"got {self.attn_implementation!r}"
            )
        if self.remat_policy is not None:
            if self.remat_policy not in REMAT_POLICIES:
                choices = tuple(REMAT_POLICIES)
                raise ValueError(
                    f"unknown remat_policy {self.remat_policy!r}; choose from {choices}"
                )
            if not self.remat:
                raise ValueError(
                    f"remat_policy {self.remat_policy!r} would be ignored: it needs remat=True"
                )

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patch tokens (the class token): pos_embedding rows off the grid."""
        return int(self.class_token)


def drop_path_rates(depth: int, max_rate: float) -> np.ndarray:
    """Per-block stochastic-depth rates: linspace(0, max_rate, depth)."""
    return np.linspace(0.0, max_rate, depth, dtype=np.float32)


class MlpBlock(nn.Module):
    """Dense(mlp_dim) -> GELU -> Dense(D)."""

    config: ViTConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        dense = dict(
            dtype=cfg.dtype,
            param_dtype=cfg.param_dtype,
            kernel_init=nn.initializers.xavier_uniform(),
            bias_init=nn.initializers.normal(stddev=1e-6),
            bias_grad=cfg.bias_grad,
        )
        y = Dense(cfg.mlp_dim, name="Dense_0", **dense)(x)
        y = gelu(y, cfg.gelu_approximate)
        return Dense(x.shape[-1], name="Dense_1", **dense)(y)


class Encoder1DBlock(nn.Module):
    """Pre-norm block: x + ls1·Attn(LN(x)), then x + ls2·MLP(LN(x)), each branch drop-pathed.
    Tokens from ``num_tokens`` on are padding: attention does not attend to them. With
    ``num_queries`` = q only the first q tokens are computed, (B, N, D) -> (B, q, D): they attend
    to every token, and the other tokens' rows, which nothing after the block would read, are
    never formed."""

    config: ViTConfig
    num_tokens: int | None = None
    num_queries: int | None = None

    @nn.compact
    def __call__(
        self, x: jax.Array, drop_rate: jax.Array | float, deterministic: bool
    ) -> tuple[jax.Array, None]:
        cfg = self.config

        def add_branch(x: jax.Array, branch: jax.Array, scale_name: str) -> jax.Array:
            if cfg.layer_scale is not None:
                scale = self.param(
                    scale_name,
                    nn.initializers.constant(cfg.layer_scale),
                    (cfg.width,),
                    cfg.param_dtype,
                )
                branch = branch * jnp.asarray(scale, cfg.dtype)
            if cfg.drop_path_rate > 0 and not deterministic:
                branch = drop_path(branch, drop_rate, rng=self.make_rng("dropout"))
            return x + branch

        norm = dict(epsilon=cfg.layer_norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        y = nn.LayerNorm(name="LayerNorm_0", **norm)(x)
        y = MultiHeadDotProductAttention(
            num_heads=cfg.num_heads,
            dtype=cfg.dtype,
            param_dtype=cfg.param_dtype,
            implementation=cfg.attn_implementation,
            bias_grad=cfg.bias_grad,
            num_keys=self.num_tokens,
            num_queries=self.num_queries,
            name="MultiHeadDotProductAttention_0",
        )(y)
        x = add_branch(x[:, : y.shape[1]], y, "ls1")
        y = nn.LayerNorm(name="LayerNorm_1", **norm)(x)
        y = MlpBlock(cfg, name="MlpBlock_0")(y)
        return add_branch(x, y, "ls2"), None


class Encoder(nn.Module):
    """``depth`` blocks (unrolled or nn.scan-ned, optionally rematerialised), then a LayerNorm.
    With ``num_tokens`` the input is padded beyond it: the padding is sliced off before the norm.
    With ``out_tokens`` = t only the first t tokens are returned, (B, N, D) -> (B, t, D), and the
    unrolled encoder's last block computes only them (``Encoder1DBlock.num_queries``): for the
    class-token pool of ViT-B/16 at 224 px that leaves out 10/12 of the last block's matmuls
    (every projection and MLP row but the keys' and values'), about 7% of the model's FLOPs.
    The scanned stack runs every block alike, on every token."""

    config: ViTConfig
    num_tokens: int | None = None
    out_tokens: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
        cfg = self.config
        rates = drop_path_rates(cfg.depth, cfg.drop_path_rate)
        block: Any = Encoder1DBlock
        if cfg.remat:
            # static_argnums counts the module as 0: (self, x, drop_rate, deterministic).
            policy = REMAT_POLICIES[cfg.remat_policy or "nothing_saveable"]
            block = nn.remat(block, prevent_cse=not cfg.scan, static_argnums=(3,), policy=policy)
        if cfg.scan:
            stack = nn.scan(
                block,
                variable_axes={"params": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=(0, nn.broadcast),
                length=cfg.depth,
            )
            blocks = stack(cfg, self.num_tokens, name="encoderblock")
            x, _ = blocks(x, jnp.asarray(rates), deterministic)
        else:
            for i in range(cfg.depth):
                queries = self.out_tokens if i == cfg.depth - 1 else None
                one = block(cfg, self.num_tokens, queries, name=f"encoderblock_{i}")
                x, _ = one(x, float(rates[i]), deterministic)
        x = x[:, : self.out_tokens or self.num_tokens]
        return nn.LayerNorm(
            epsilon=cfg.layer_norm_eps,
            dtype=cfg.dtype,
            param_dtype=cfg.param_dtype,
            name="encoder_norm",
        )(x)


class ViT(nn.Module):
    """images (B, H, W, 3) -> logits (B, num_classes), features (B, D or R) if num_classes == 0;
    with pool="none" per token (B, N, ·). Output is float32 whatever the compute dtype."""

    config: ViTConfig

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool = False) -> jax.Array:
        cfg = self.config
        patch = cfg.patch_size
        if images.ndim != 4 or images.shape[1] % patch or images.shape[2] % patch:
            raise ValueError(
                f"images must be (B, H, W, C) with H and W multiples of patch {patch}, "
                f"got shape {images.shape}"
            )
        x = PatchConv(
            cfg.width, patch, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
            bias_grad=cfg.bias_grad, name="embedding",
        )(images)  # fmt: skip
        x = rearrange(x, "b gh gw d -> b (gh gw) d")
        batch, _, width = x.shape
        if cfg.class_token:
            cls = self.param("cls", nn.initializers.zeros, (1, 1, width), cfg.param_dtype)
            cls = jnp.broadcast_to(jnp.asarray(cls, cfg.dtype), (batch, 1, width))
            x = jnp.concatenate([cls, x], axis=1)
        pos = self.param(
            "pos_embedding",
            nn.initializers.normal(stddev=0.02),
            (1, x.shape[1], width),
            cfg.param_dtype,
        )
        x = x + jnp.asarray(pos, cfg.dtype)
        num_tokens = x.shape[1]
        train_batch = per_device(batch) if train else None  # sets the padding for its grads
        length = padded_length(num_tokens, cfg.attn_implementation, cfg.attn_pad_to, train_batch)
        x = pad_tokens(x, length)
        padded = x.shape[1] > num_tokens
        out_tokens = 1 if cfg.pool == "tok" else None  # only the class token is read
        encoder = Encoder(cfg, num_tokens if padded else None, out_tokens, name="Transformer")
        x = encoder(x, deterministic=not train)

        if cfg.pool == "tok":
            x = x[:, 0]
        elif cfg.pool == "gap":
            x = jnp.mean(x[:, cfg.num_prefix_tokens :], axis=1)
        if cfg.representation_size is not None:
            x = Dense(
                cfg.representation_size,
                dtype=cfg.dtype,
                param_dtype=cfg.param_dtype,
                bias_grad=cfg.bias_grad,
                name="pre_logits",
            )(x)
            x = jnp.tanh(x)
        if cfg.num_classes > 0:
            # zero-initialised, as big_vision's fine-tuning head (timm's reset_classifier, which
            # the reference calls, draws U(+-1/sqrt(D))): on the first step only the head moves,
            # the adapter's gradients are zero
            x = Dense(
                cfg.num_classes,
                dtype=cfg.dtype,
                param_dtype=cfg.param_dtype,
                bias_grad=cfg.bias_grad,
                kernel_init=nn.initializers.zeros,
                name="head",
            )(x)
        return x.astype(jnp.float32)


def vit(
    variant: str, *, patch: int, num_classes: int = 0, depth: int | None = None, **options: Any
) -> ViT:
    """A ViT of a named size ("Ti", "S", "B", "L"); ``depth`` overrides the variant's depth and
    ``options`` are any other ViTConfig fields (pool, layer_scale, dtype, scan, ...)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ViT variant {variant!r}; known: {sorted(VARIANTS)}")
    spec = VARIANTS[variant]._asdict()
    if depth is not None:
        spec["depth"] = depth
    return ViT(ViTConfig(**spec, patch_size=patch, num_classes=num_classes, **options))
