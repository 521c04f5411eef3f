"""A/B record (not project code): the attention's value bias added to the values (VALUE_BIAS=add,
the code of b962691: key bias already left out) or folded into the out projection's bias as its
input offset (VALUE_BIAS=fold, the code as committed):

    VALUE_BIAS=add python value_bias_ab.py --json out.json --suites train --only 'lora-r8@256$'
"""

import os
import sys

import flax.linen as nn
import jax

from bench import jax_suite
from experiments.models import attention, vit
from experiments.models.dense import Dense

mode = os.environ["VALUE_BIAS"]
if mode not in ("add", "fold"):
    raise SystemExit(f"VALUE_BIAS must be add or fold, got {mode!r}")


class ValueBiasAdded(attention.MultiHeadDotProductAttention):
    """b962691's attention: the value projection adds its bias."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        head_dim = width // self.num_heads
        implementation, queries = self.implementation, x
        if self.num_queries is not None:
            queries, implementation = x[:, : self.num_queries], "xla"

        def projection(name, tokens, skip_bias=False):
            return Dense(
                features=(self.num_heads, head_dim), dtype=self.dtype,
                param_dtype=self.param_dtype, kernel_init=nn.initializers.xavier_uniform(),
                bias_grad=self.bias_grad, skip_bias=skip_bias, name=name,
            )(tokens)

        attended = attention.masked_dot_product_attention(
            projection("query", queries), projection("key", x, skip_bias=True),
            projection("value", x), num_keys=self.num_keys, implementation=implementation,
        )
        return Dense(
            features=width, axis=(-2, -1), dtype=self.dtype, param_dtype=self.param_dtype,
            kernel_init=nn.initializers.xavier_uniform(), bias_grad=self.bias_grad, name="out",
        )(attended)


if mode == "add":
    vit.MultiHeadDotProductAttention = ValueBiasAdded
print("VALUE_BIAS:", mode, flush=True)
sys.exit(jax_suite.main(sys.argv[1:]))
