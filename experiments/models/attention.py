"""Multi-head self-attention with an optional fused (cuDNN flash) kernel.

The module is named ``MultiHeadDotProductAttention`` so that its params sit where big_vision and
the original ViT checkpoints put them::

    query/kernel (D, heads, head_dim)   query/bias (heads, head_dim)   (same for key, value)
    out/kernel   (heads, head_dim, D)   out/bias   (D,)

cuDNN flash attention needs bf16/fp16 inputs and, for training, an even sequence length (jax
0.11.2's refuses 197 = 1 + 14*14), so the model pads its token sequence ONCE,
before the first block, to a multiple of ``pad_to`` (``pad_tokens``; 2 for cuDNN: 197 -> 198),
runs every block on the padded sequence and slices the padding off after the last one. Each
attention call masks the padded keys (``key_value_seq_lengths``), so the real tokens never see
the padded ones and the result equals unpadded attention; the padded rows themselves are real
(finite) attention rows that nothing reads. Padding once instead of around every attention call
removes a pad of q, k, v and a slice of the output per block and their gradients; every matmul
then runs on the padded rows, so the pad is as small as cuDNN allows: LoRA r=8 on ViT-B/16 at
batch 256 on an H200 trains 3.7% faster padded to 198 than to 208 (docs/benchmarks.md, call 29).

Two of the three q/k/v biases (params that checkpoints carry) are not added where a textbook
layer adds them, which saves a pass over the keys and one over the values per block, forward
and backward, and changes no output:

* the key bias b moves every logit of a query by the same amount, q·(k_j + b) = q·k_j + q·b
  for each key j, and softmax over the keys cancels a shift shared by a query's logits: the
  module leaves it out, and its gradient is zero (exactly, where with the add it is rounding
  noise);
* the value bias c reaches every output row whole, since each row of softmax weights sums to
  one: Σ_j w_ij (v_j + c) = Σ_j w_ij v_j + c, so it is the out projection's ``input_offset``,
  folded into that layer's bias as c · W_out + b_out (``experiments.models.dense.Dense``).

With ``num_queries`` only the first tokens ask (queries (B, q, ...)) while every token answers
(keys and values (B, N, ...)): the ViT's last block when only the class token is read. That call
always runs XLA's attention: its scores are (B, heads, q, N), a sliver, and cuDNN trains only on
query lengths it accepts.
"""

from __future__ import annotations

from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from experiments.models.dense import BiasGrad, Dense

AttentionImpl = Literal["xla", "cudnn"] | None

#: sequence multiple used for ``implementation="cudnn"`` when ``pad_to`` is not given.
CUDNN_SEQ_MULTIPLE = 2

_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)


def resolve_pad_to(implementation: AttentionImpl, pad_to: int | None) -> int:
    """Sequence multiple to pad to: ``pad_to`` if given, else 2 for cuDNN (even lengths), else 1."""
    if pad_to is not None:
        if pad_to < 1:
            raise ValueError(f"attention pad_to must be >= 1, got {pad_to}")
        return pad_to
    return CUDNN_SEQ_MULTIPLE if implementation == "cudnn" else 1


def pad_tokens(x: jax.Array, multiple: int) -> jax.Array:
    """(B, N, ...) -> (B, N', ...) with N' the next multiple of ``multiple``, zeros appended."""
    pad = -x.shape[1] % multiple
    if pad == 0:
        return x
    return jnp.pad(x, ((0, 0), (0, pad)) + ((0, 0),) * (x.ndim - 2))


def masked_dot_product_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    *,
    num_keys: int | None = None,
    implementation: AttentionImpl = None,
) -> jax.Array:
    """softmax(q·kᵀ/√head_dim)·v over the sequence axis, inputs and output (B, N, heads, head_dim),
    attending only to the first ``num_keys`` keys (None: all of them)."""
    if implementation == "cudnn" and query.dtype not in _CUDNN_DTYPES:
        raise ValueError(
            f"attention implementation='cudnn' needs bfloat16/float16 inputs, got {query.dtype}; "
            "set the model dtype to bfloat16 or use implementation=None/'xla'"
        )
    batch, length = key.shape[:2]
    if num_keys is None or num_keys == length:
        return jax.nn.dot_product_attention(query, key, value, implementation=implementation)
    if not 0 < num_keys < length:
        raise ValueError(f"num_keys must be in [1, {length}], got {num_keys}")
    lengths = jnp.full((batch,), num_keys, dtype=jnp.int32)
    return jax.nn.dot_product_attention(
        query, key, value, key_value_seq_lengths=lengths, implementation=implementation
    )


class MultiHeadDotProductAttention(nn.Module):
    """Self-attention (B, N, D) -> (B, q, D) with DenseGeneral q/k/v/out projections: the first
    ``num_queries`` tokens attend (None: q = N, every token) to the first ``num_keys`` tokens
    (the rest is padding; None: every token). ``bias_grad``: see ``experiments.models.dense``."""

    num_heads: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    implementation: AttentionImpl = None
    num_keys: int | None = None
    num_queries: int | None = None
    bias_grad: BiasGrad = "reduce"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        if width % self.num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {self.num_heads}")
        head_dim = width // self.num_heads
        implementation = self.implementation
        queries = x
        if self.num_queries is not None:
            if not 0 < self.num_queries <= x.shape[1]:
                raise ValueError(
                    f"num_queries must be in [1, {x.shape[1]}], got {self.num_queries}"
                )
            queries, implementation = x[:, : self.num_queries], "xla"

        def projection(name: str, skip_bias: bool = False) -> Dense:
            return Dense(
                features=(self.num_heads, head_dim),
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                kernel_init=nn.initializers.xavier_uniform(),
                bias_grad=self.bias_grad,
                skip_bias=skip_bias,
                name=name,
            )

        value = projection("value", skip_bias=True)
        attended = masked_dot_product_attention(
            projection("query")(queries),
            projection("key", skip_bias=True)(x),
            value(x),
            num_keys=self.num_keys,
            implementation=implementation,
        )
        return Dense(
            features=width,
            axis=(-2, -1),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.initializers.xavier_uniform(),
            bias_grad=self.bias_grad,
            name="out",
        )(attended, input_offset=value.variables["params"]["bias"])
