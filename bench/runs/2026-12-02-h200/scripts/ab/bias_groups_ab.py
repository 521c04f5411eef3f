"""A/B prototype (not project code, not yet run on a GPU): GLoRA K=4 with each subnet's share
run as G groups, every bias broadcast over the groups (kernels not), so that the per-subnet
bias gradients become (K*G, rows/G, d) -> (K*G, d) column reductions with G times the output
columns, then a tiny sum over G.  Same numbers as the plain step up to summation order.

Why: at batch 64 XLA reduces the (4, 3328, 768) per-subnet bias gradients in one stage at
12-19% of HBM bandwidth (call 14's profile, docs/benchmarks.md); more output columns give the
one-stage kernel more blocks.

    JAX_PLATFORMS=cpu PYTHONPATH=. python bench/runs/2026-12-02-h200/scripts/ab/bias_groups_ab.py check
    BIAS_GROUPS=4 python bench/runs/2026-12-02-h200/scripts/ab/bias_groups_ab.py \\
        --json out.json --suites train --train-batches 64 \\
        --only '^jax/train/(glora-supernet-k4|glora-supernet-k4-bias-groups)@64$'
"""
import os, sys

import jax
import jax.numpy as jnp

from bench import jax_train
from experiments.methods import MethodConfig, build_method
from experiments.training.step import Forward
from peft_core.paths import flatten, unflatten

GROUPS = int(os.environ.get("BIAS_GROUPS", "4"))


def grouped_forward(forward: Forward, groups: int) -> Forward:
    """``forward`` on ``groups`` equal slices of the batch (vmapped), biases batched over them."""

    def run(params, images, *, train, rng):
        flat = flatten(params)
        biases = {k: v for k, v in flat.items() if v.ndim == 1 and k.endswith("bias")}
        rest = {k: v for k, v in flat.items() if k not in biases}
        xs = images.reshape(groups, images.shape[0] // groups, *images.shape[1:])
        tiled = {k: jnp.broadcast_to(v, (groups, *v.shape)) for k, v in biases.items()}

        def one(group_biases, x, key):
            return forward(unflatten({**rest, **group_biases}), x, train=train, rng=key)

        logits = jax.vmap(one)(tiled, xs, jax.random.split(rng, groups))
        return logits.reshape(-1, logits.shape[-1])

    return run


def _custom(backbone):
    method = build_method(
        MethodConfig("glora", space="large"), targets=backbone.targets, stacked=backbone.stacked,
        head_pattern=jax_train.HEAD_PATTERN, compute_dtype=backbone.compute_dtype,
    )
    return method.adapter, grouped_forward(backbone.forward, GROUPS)


CASE = jax_train.TrainCase(
    "glora-supernet-k4-bias-groups", MethodConfig("glora", space="large"), num_configs=4,
    custom=_custom, note=f"prototype: each subnet's share as {GROUPS} groups, biases batched",
)
jax_train.VIT_CASES = (*jax_train.VIT_CASES, CASE)


def check() -> None:
    """CPU, float32 one-block ViT-Ti: the gradient of the K=4 supernet loss (random trainable
    values, so that every support and the head matter) with the plain and the grouped forward."""
    from experiments.backbones import Backbone
    from experiments.data.preprocess import normalize
    from experiments.models.vit import vit
    from experiments.training.partition import effective_params, init_trainable
    from experiments.training.step import classification_loss
    from glora_jax.supernet import supernet_loss
    from peft_core.targets import DENSE_TARGETS

    model = vit("Ti", patch=16, depth=1, num_classes=10, dtype=jnp.float32)
    params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)["params"]
    backbone = Backbone(model, params, lambda x: normalize(x, "minus1_1"), DENSE_TARGETS, None)
    adapter, _ = _custom(backbone)
    space = adapter.space(params)
    frozen, trainable = init_trainable(
        jax.random.key(1), params, adapter, head_pattern=jax_train.HEAD_PATTERN
    )
    leaves, treedef = jax.tree.flatten(trainable)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    trainable = treedef.unflatten(
        [x + 0.05 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    )
    images = jax.random.randint(jax.random.key(3), (16, 32, 32, 3), 0, 256).astype(jnp.uint8)
    labels = jnp.arange(16) % 10

    def grads(forward):
        def config_loss(t, x, y, c, rng):
            eff = effective_params(adapter, frozen, t, c)
            return classification_loss(forward(eff, x, train=True, rng=rng), y)

        loss = supernet_loss(config_loss, space, num_configs=4)
        return jax.grad(lambda t: loss(t, images, labels, jax.random.key(4))[0])(trainable)

    g0, g1 = grads(backbone.forward), grads(grouped_forward(backbone.forward, GROUPS))
    # A scalar support of a bias that feeds a LayerNorm (fc2 / out "e") has a gradient that is
    # zero in exact arithmetic (LayerNorm ignores a constant added to every feature): its
    # float noise (~1e-8) has no relative error to speak of, so the scale is the largest entry.
    scale = max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(g0))
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)))
    print(f"{len(jax.tree.leaves(g0))} gradient leaves; max |difference| {diff:.2e} "
          f"against the largest entry {scale:.2e} ({diff / scale:.1e})")


if __name__ == "__main__":
    if sys.argv[1:] == ["check"]:
        GROUPS = 2
        check()
    else:
        from bench import jax_suite
        sys.exit(jax_suite.main(sys.argv[1:]))
