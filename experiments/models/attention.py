"""Multi-head self-attention with an optional fused (cuDNN flash) kernel.

The module is named ``MultiHeadDotProductAttention`` so that its params sit where big_vision and
the original ViT checkpoints put them::

    query/kernel (D, heads, head_dim)   query/bias (heads, head_dim)   (same for key, value)
    out/kernel   (heads, head_dim, D)   out/bias   (D,)

cuDNN flash attention needs bf16/fp16 inputs and, for training, an even sequence length (jax
0.11.2's refuses 197 = 1 + 14*14), so the model pads its token sequence ONCE,
before the first block (``padded_length``, ``pad_tokens``; 197 -> 198 for cuDNN, or 200 where
that makes the rows a multiple of ``ROW_MULTIPLE``, below),
runs every block on the padded sequence and slices the padding off after the last one. Each
attention call masks the padded keys (``key_value_seq_lengths``), so the real tokens never see
the padded ones and the result equals unpadded attention; the padded rows themselves are real
(finite) attention rows that nothing reads. Padding once instead of around every attention call
removes a pad of q, k, v and a slice of the output per block and their gradients; every matmul
then runs on the padded rows, so the pad is as small as cuDNN allows: LoRA r=8 on ViT-B/16 at
batch 256 on an H200 trains 3.7% faster padded to 198 than to 208 (docs/benchmarks.md, call 29).
The one exception is the row count: XLA's split-K GEMMs over the B x N token rows (the weight
gradients of low-rank factors, xᵀg) pad their operands' rows to whole slices of whole K tiles,
a pad pass per layer and operand: at batch 64 a device's 64 x 198 = 12672 rows went to 12800
(32 slices of 400), 90 pads a step (call 127). On 200 tokens, 12800 rows, LoRA r=8 trains 4.5%
faster there (H100, call 129); at batch 256 (50688 = 99 x 512 rows, no pad) 198 stays the
faster (3933 against 3873 img/s, call 29); 128 was not timed against 198. 512 rows is the
measured rule, not XLA's: the slicing is its autotuner's choice. So in a training
step the cuDNN default takes the shortest even length whose rows per device are a multiple of
``ROW_MULTIPLE``, if it adds at most ``ROW_PAD_LIMIT`` of the tokens; else, and without
gradients (``train=False``: no such GEMMs), the shortest even length.

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

import math
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from experiments.models.dense import BiasGrad, Dense

AttentionImpl = Literal["xla", "cudnn"] | None

#: sequence multiple used for ``implementation="cudnn"`` when ``pad_to`` is not given.
CUDNN_SEQ_MULTIPLE = 2

#: a device's rows (batch x tokens) in multiples of which XLA's split-K GEMMs needed no pad
#: (12800 and 50688 rows; 12672 got one: module docstring).
ROW_MULTIPLE = 512

#: the most the cuDNN default lengthens a sequence to reach ``ROW_MULTIPLE`` rows, as a fraction
#: of its tokens (197 -> 200 at batch 64, 1.5%).
ROW_PAD_LIMIT = 0.02

_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)

#: The name of jax's fused (cuDNN) attention forward primitive, the one a traced program holds
#: (jax-internal: ``jax._src.cudnn.fused_attention_stablehlo``; tests/test_vit.py fails if it is
#: renamed). jax's cuDNN attention is a custom VJP with no ``checkpoint_name`` inside, so a remat
#: policy can keep its outputs (the attention output and the softmax statistics its backward
#: reads) only by matching this primitive. XLA's attention (``implementation="xla"``, e.g. on a
#: TPU) has none: there the policy keeps nothing more.
FUSED_ATTENTION_FORWARD = "dot_product_attention_fwd_wrapper"


def fused_attention_saveable(prim: Any, *_: Any, **__: Any) -> bool:
    """A ``jax.checkpoint`` policy: keep the fused attention forward's outputs, so that a
    rematerialised block's backward pass does not run the forward kernel again."""
    return prim.name == FUSED_ATTENTION_FORWARD


def padded_length(
    num_tokens: int,
    implementation: AttentionImpl,
    pad_to: int | None,
    local_batch: int | None = None,
) -> int:
    """Tokens after the model's one pad (module docstring).

    ``pad_to`` given: the next multiple of it. Else for cuDNN: the shortest even length, or for
    a training step (``local_batch``: its examples per device, ``activation_grads.per_device``;
    the split-K GEMMs are its weight gradients') the shortest even length L with local_batch x
    L a multiple of ``ROW_MULTIPLE``
    if L <= num_tokens (1 + ROW_PAD_LIMIT) (197 -> 200 at 64 examples per device, 198 at 256 or
    32). Else ``num_tokens``: XLA's attention takes any length.
    """
    if num_tokens < 1 or (local_batch is not None and local_batch < 1):
        raise ValueError(f"need num_tokens and local_batch >= 1, got {num_tokens}, {local_batch}")
    if pad_to is not None:
        if pad_to < 1:
            raise ValueError(f"attention pad_to must be >= 1, got {pad_to}")
        return num_tokens + -num_tokens % pad_to
    if implementation != "cudnn":
        return num_tokens
    even = num_tokens + -num_tokens % CUDNN_SEQ_MULTIPLE
    if local_batch is None:
        return even
    longest = math.floor(num_tokens * (1 + ROW_PAD_LIMIT))
    for length in range(even, longest + 1, CUDNN_SEQ_MULTIPLE):
        if local_batch * length % ROW_MULTIPLE == 0:
            return length
    return even


def pad_tokens(x: jax.Array, length: int) -> jax.Array:
    """(B, N, ...) -> (B, length, ...), zeros appended; length >= N."""
    if length < x.shape[1]:
        raise ValueError(f"cannot pad {x.shape[1]} tokens to {length}")
    if length == x.shape[1]:
        return x
    return jnp.pad(x, ((0, 0), (0, length - x.shape[1])) + ((0, 0),) * (x.ndim - 2))


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
    if implementation == "cudnn":
        query, key, value = (_mapped_axis_first(t) for t in (query, key, value))
    batch, length = key.shape[:2]
    if num_keys is None or num_keys == length:
        return jax.nn.dot_product_attention(query, key, value, implementation=implementation)
    if not 0 < num_keys < length:
        raise ValueError(f"num_keys must be in [1, {length}], got {num_keys}")
    if implementation != "cudnn":
        lengths = jnp.full((batch,), num_keys, dtype=jnp.int32)
        return jax.nn.dot_product_attention(
            query, key, value, key_value_seq_lengths=lengths, implementation=implementation
        )
    # cuDNN's batching rule reshapes both lengths with q, k and v: under vmap they must be
    # mapped too, so they are read off the (first-mapped) keys; XLA folds the zeros
    zeros = key[:, 0, 0, 0].astype(jnp.int32) * 0
    return jax.nn.dot_product_attention(
        query, key, value, query_seq_lengths=zeros + query.shape[1],
        key_value_seq_lengths=zeros + num_keys, implementation=implementation,
    )  # fmt: skip


def _mapped_axis_first(x: jax.Array) -> jax.Array:
    """``x`` unchanged; under ``vmap`` with its mapped axis first, the only place cuDNN's
    batching rule takes it. The search vmaps over subnets' weights alone: a projection without
    a bias (key, value) leaves the mapped axis where dot_general put it, after (B, N). A
    reshape's batching rule moves it first; outside vmap the two reshapes are free."""
    return x.reshape(-1, *x.shape[2:]).reshape(x.shape)


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
