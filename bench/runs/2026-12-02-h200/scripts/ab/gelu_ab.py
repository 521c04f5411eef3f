"""Run bench.jax_suite with the ViT's GELU replaced by variant $GELU (A/B only, not project code)."""
import functools, os, sys
import jax, jax.numpy as jnp
from experiments.models import activations, vit

C, A = activations._C, activations._CUBIC
f32 = lambda x: x.astype(jnp.float32)

def custom(fwd, deriv):
    @functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
    def g(x, approximate=True):
        return fwd(x).astype(x.dtype)
    g.defvjp(lambda x, a: (fwd(x).astype(x.dtype), x),
             lambda a, x, ct: ((ct * deriv(x)).astype(x.dtype),))
    return g

def sig_fwd(x):
    return x * jax.nn.sigmoid(2 * C * (x + A * x * x * x))

def sig_deriv(x):
    s = jax.nn.sigmoid(2 * C * (x + A * x * x * x))
    return s + x * s * (1 - s) * (2 * C) * (1 + 3 * A * x * x)

def tanh_deriv(x):
    t = jnp.tanh(C * (x + A * x * x * x))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * C * (1 + 3 * A * x * x)

VARIANTS = {
    "cur": activations.gelu,
    "autodiff": lambda x, approximate=True: jax.nn.gelu(x, approximate=approximate),
    "sig32": custom(lambda x: sig_fwd(f32(x)), lambda x: sig_deriv(f32(x))),
    "sig16": custom(sig_fwd, sig_deriv),
    "tanh16": custom(lambda x: jax.nn.gelu(x), tanh_deriv),
    "curfwd_sig32bwd": custom(lambda x: jax.nn.gelu(x), lambda x: sig_deriv(f32(x))),
}

if __name__ == "__main__":
    name = os.environ["GELU"]
    vit.gelu = VARIANTS[name]
    print("GELU variant", name, flush=True)
    from bench import jax_suite
    sys.exit(jax_suite.main(sys.argv[1:]))
