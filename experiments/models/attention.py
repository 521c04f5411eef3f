"""Multi-head self-attention with an optional fused (cuDNN flash) kernel.

The module is named ``MultiHeadDotProductAttention`` so that its params sit where big_vision and
the original ViT checkpoints put them::

    query/kernel (D, heads, head_dim)   query/bias (heads, head_dim)   (same for key, value)
    out/kernel   (heads, head_dim, D)   out/bias   (D,)

cuDNN flash attention needs bf16/fp16 inputs and a sequence length it supports, so the sequence
(e.g. 197 = 1 + 14*14) is zero-padded to a multiple of ``pad_to`` and the true lengths are passed
as ``query_seq_lengths`` / ``key_value_seq_lengths``: padded keys are masked out of every softmax
and the padded query rows are sliced off, so the result equals unpadded attention.
"""

from __future__ import annotations

from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

AttentionImpl = Literal["xla", "cudnn"] | None

#: sequence multiple used for ``implementation="cudnn"`` when ``pad_to`` is not given.
CUDNN_SEQ_MULTIPLE = 16

_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)


def resolve_pad_to(implementation: AttentionImpl, pad_to: int | None) -> int:
    """Sequence multiple to pad to: ``pad_to`` if given, else 16 for cuDNN and 1 (none) else."""
    if pad_to is not None:
        if pad_to < 1:
            raise ValueError(f"attention pad_to must be >= 1, got {pad_to}")
        return pad_to
    return CUDNN_SEQ_MULTIPLE if implementation == "cudnn" else 1


def padded_dot_product_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    *,
    implementation: AttentionImpl = None,
    pad_to: int = 1,
) -> jax.Array:
    """softmax(q·kᵀ/√head_dim)·v over the sequence axis, inputs and output (B, N, heads, head_dim).

    With ``pad_to > 1`` and N not a multiple of it, q/k/v are zero-padded to the next multiple,
    padded keys are masked via sequence lengths, and the output is sliced back to N rows.
    """
    if implementation == "cudnn" and query.dtype not in _CUDNN_DTYPES:
        raise ValueError(
            f"attention implementation='cudnn' needs bfloat16/float16 inputs, got {query.dtype}; "
            "set the model dtype to bfloat16 or use implementation=None/'xla'"
        )
    batch, length = query.shape[:2]
    pad = -length % pad_to
    if pad == 0:
        return jax.nn.dot_product_attention(query, key, value, implementation=implementation)
    widths = ((0, 0), (0, pad), (0, 0), (0, 0))
    query, key, value = (jnp.pad(t, widths) for t in (query, key, value))
    lengths = jnp.full((batch,), length, dtype=jnp.int32)
    out = jax.nn.dot_product_attention(
        query,
        key,
        value,
        query_seq_lengths=lengths,
        key_value_seq_lengths=lengths,
        implementation=implementation,
    )
    return out[:, :length]


class MultiHeadDotProductAttention(nn.Module):
    """Self-attention (B, N, D) -> (B, N, D) with DenseGeneral q/k/v/out projections."""

    num_heads: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    implementation: AttentionImpl = None
    pad_to: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        if width % self.num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {self.num_heads}")
        head_dim = width // self.num_heads

        def projection(name: str) -> jax.Array:
            return nn.DenseGeneral(
                features=(self.num_heads, head_dim),
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                kernel_init=nn.initializers.xavier_uniform(),
                name=name,
            )(x)

        attended = padded_dot_product_attention(
            projection("query"),
            projection("key"),
            projection("value"),
            implementation=self.implementation,
            pad_to=resolve_pad_to(self.implementation, self.pad_to),
        )
        return nn.DenseGeneral(
            features=width,
            axis=(-2, -1),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.initializers.xavier_uniform(),
            name="out",
        )(attended)
