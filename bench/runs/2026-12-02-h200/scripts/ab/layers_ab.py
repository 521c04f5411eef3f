"""bench.jax_suite with GLoRA's/FLoRA's layer batching chosen by $OVER_LAYERS (A/B only):
split (HEAD, 3d85f90), index (f2cd62f: x[j] per layer), perlayer (no batching over layers)."""
import os, sys
import jax
import jax.numpy as jnp
import glora_jax.adapter as ga
import flora_jax.adapter as fa
from peft_core.adapter import group_by, over_stack

def index_form(fn, args, n_stack):
    def signature(i):
        leaves, structure = jax.tree.flatten(args[i])
        return (n_stack[i], structure, *((jnp.shape(x), jnp.result_type(x)) for x in leaves))
    out = [None] * len(args)
    for group in group_by(range(len(args)), signature):
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *(args[i] for i in group))
        batched = over_stack(fn, n_stack[group[0]] + 1)(*stacked)
        for j, i in enumerate(group):
            out[i] = jax.tree.map(lambda x, j=j: x[j], batched)
    return out

def perlayer_form(fn, args, n_stack):
    return [over_stack(fn, n)(*a) for a, n in zip(args, n_stack, strict=True)]

mode = os.environ.get("OVER_LAYERS", "split")
if mode != "split":
    form = {"index": index_form, "perlayer": perlayer_form}[mode]
    ga.over_layers = fa.over_layers = form
print(f"over_layers form: {mode}", flush=True)

if __name__ == "__main__":
    from bench import jax_suite
    sys.exit(jax_suite.main(sys.argv[1:]))
