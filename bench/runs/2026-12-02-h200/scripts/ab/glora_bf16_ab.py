"""bench.jax_suite with GLoRA's weight side in bf16 when $GLORA_BF16=1 (A/B prototype only)."""
import inspect, os, sys
import jax.numpy as jnp
from glora_jax import adapter, support

if os.environ.get("GLORA_BF16") == "1":
    src = inspect.getsource(support.glora_delta)
    assert "jnp.promote_types(w0.dtype, jnp.float32)" in src
    ns = dict(vars(support))
    exec(src.replace("jnp.promote_types(w0.dtype, jnp.float32)", "jnp.bfloat16"), ns)
    adapter.glora_delta = ns["glora_delta"]
    adapter.add_delta = lambda w, d: w.astype(jnp.bfloat16) + d.astype(jnp.bfloat16)
    print("GLoRA weight side in bf16", flush=True)

if __name__ == "__main__":
    from bench import jax_suite
    sys.exit(jax_suite.main(sys.argv[1:]))
