"""bench.jax_suite with one fused q/k/v projection when $FUSED_QKV=1 (A/B prototype only)."""
import math, os, sys
from typing import Any
import flax.linen as nn
import jax, jax.numpy as jnp
from experiments.models import attention, vit


class ProjectionParams(nn.Module):
    """The params of nn.DenseGeneral(features=(heads, head_dim)) on fan_in inputs, not applied."""
    fan_in: int
    features: tuple[int, int]
    param_dtype: Any

    @nn.compact
    def __call__(self):
        def init(rng, shape, dtype):
            flat = nn.initializers.xavier_uniform()(rng, (self.fan_in, math.prod(self.features)), dtype)
            return flat.reshape(shape)
        kernel = self.param("kernel", init, (self.fan_in, *self.features), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, self.features, self.param_dtype)
        return kernel, bias


class FusedMHA(attention.MultiHeadDotProductAttention):
    @nn.compact
    def __call__(self, x):
        width = x.shape[-1]
        head_dim = width // self.num_heads
        parts = [ProjectionParams(width, (self.num_heads, head_dim), self.param_dtype, name=n)()
                 for n in ("query", "key", "value")]
        kernel = jnp.stack([k for k, _ in parts], axis=1).astype(self.dtype)  # (D, 3, H, hd)
        bias = jnp.stack([b for _, b in parts]).astype(self.dtype)            # (3, H, hd)
        qkv = jnp.einsum("bnd,dthk->tbnhk", x.astype(self.dtype), kernel) + bias[:, None, None]
        attended = attention.masked_dot_product_attention(
            qkv[0], qkv[1], qkv[2], num_keys=self.num_keys, implementation=self.implementation)
        return nn.DenseGeneral(features=width, axis=(-2, -1), dtype=self.dtype,
                               param_dtype=self.param_dtype,
                               kernel_init=nn.initializers.xavier_uniform(), name="out")(attended)


if os.environ.get("FUSED_QKV") == "1":
    vit.MultiHeadDotProductAttention = FusedMHA
    print("fused qkv", flush=True)

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(__file__))
    import glora_bf16_ab  # noqa: F401  (applies $GLORA_BF16)
    from bench import jax_suite
    sys.exit(jax_suite.main(sys.argv[1:]))
