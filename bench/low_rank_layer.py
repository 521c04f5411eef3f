"""One adapted dense layer, forward + backward, in the ways a LoRA update can be trained.

    python -m bench.low_rank_layer [--tokens 50432 12608] [--json out.json]

Per layer shape (fan_in, fan_out) of ViT-B (768x768: q/k/v/out, 768x3072: fc1, 3072x768: fc2)
and token count M (ViT-B at batch 256 / 64: 256·197 = 50432, 64·197 = 12608), bf16 activations
x (M, fan_in), f32 W0 and rank-8 factors A (fan_in, 8), B (8, fan_out); the gradient of
<y, c> for a fixed random c:

    frozen        y = x W0                     dx only (the bound: no weight gradient at all)
    weight        y = x (W0 + A B)             dx, dA, dB by autodiff: forms dL/dW = xᵀ dy
    activation    y = x W0 + (x A) B           dx, dA, dB by autodiff: rank-8 products, no dL/dW0
    vjp-separate  custom VJP: y = x W, h = x A; dx = dy Wᵀ, g = dy Bᵀ; dA = xᵀ g, dB = hᵀ dy
    vjp-concat    the same with x [W | A] and dy [W ; B]ᵀ as one matmul each (N + 8 columns)

Gradients of every form are checked against ``weight`` (relative error, printed) before timing.
Timing: jit, warm-up, then windows of 5 calls launched back to back on 3 rotating input sets,
median over the windows (``bench.timing``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bench.arguments import layer_shape
from bench.timing import TimingSettings, time_calls
from experiments.command_line import exit_on_error, positive_int

RANK = 8
SHAPES = ((768, 768), (768, 3072), (3072, 768))
Form = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


def frozen(x: jax.Array, w0: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    return x @ w0.astype(x.dtype)


def weight(x: jax.Array, w0: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    return x @ (w0 + a @ b).astype(x.dtype)


def activation(x: jax.Array, w0: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    return x @ w0.astype(x.dtype) + (x @ a.astype(x.dtype)) @ b.astype(x.dtype)


def custom_vjp_form(*, concat: bool) -> Form:
    """y = x (W0 + A B) with the hand-written backward of the module docstring."""

    @jax.custom_vjp
    def layer(x: jax.Array, w0: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
        return weight(x, w0, a, b)

    def fwd(x: jax.Array, w0: jax.Array, a: jax.Array, b: jax.Array) -> tuple[jax.Array, Any]:
        w = (w0 + a @ b).astype(x.dtype)
        ac, bc = a.astype(x.dtype), b.astype(x.dtype)
        if concat:
            yh = x @ jnp.concatenate([w, ac], axis=1)
            y, h = yh[:, : w.shape[1]], yh[:, w.shape[1] :]
        else:
            y, h = x @ w, x @ ac
        return y, (x, h, w, bc)

    def bwd(res: Any, dy: jax.Array) -> tuple[jax.Array, ...]:
        x, h, w, bc = res
        if concat:
            dg = dy @ jnp.concatenate([w, bc], axis=0).T
            dx, g = dg[:, : w.shape[0]], dg[:, w.shape[0] :]
        else:
            dx, g = dy @ w.T, dy @ bc.T
        f32 = jnp.float32
        da = jnp.einsum("mi,mr->ir", x, g, preferred_element_type=f32)
        db = jnp.einsum("mr,mo->ro", h, dy, preferred_element_type=f32)
        dw0 = jnp.einsum("mi,mo->io", x, dy, preferred_element_type=f32)  # dead unless asked for
        return dx, dw0, da, db

    layer.defvjp(fwd, bwd)
    return layer


FORMS: dict[str, Form] = {
    "frozen": frozen,
    "weight": weight,
    "activation": activation,
    "vjp-separate": custom_vjp_form(concat=False),
    "vjp-concat": custom_vjp_form(concat=True),
}


def gradient_fn(form: Form, *, train_factors: bool) -> Callable[..., Any]:
    """jit(grad of <form(x, W0, A, B), c>) w.r.t. x (and A, B when ``train_factors``)."""

    def loss(x: jax.Array, a: jax.Array, b: jax.Array, w0: jax.Array, c: jax.Array) -> jax.Array:
        return jnp.vdot(form(x, w0, a, b).astype(jnp.float32), c)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2) if train_factors else (0,)))


def inputs(tokens: int, fan_in: int, fan_out: int, seed: int) -> tuple[jax.Array, ...]:
    """(x bf16, A, B, W0, c) with fresh random values (B not zero, so every path is exercised)."""
    k = jax.random.split(jax.random.key(seed), 5)
    x = jax.random.normal(k[0], (tokens, fan_in), jnp.bfloat16)
    a = jax.random.normal(k[1], (fan_in, RANK)) / np.sqrt(fan_in)
    b = jax.random.normal(k[2], (RANK, fan_out)) * 0.1
    w0 = jax.random.normal(k[3], (fan_in, fan_out)) / np.sqrt(fan_in)
    return x, a, b, w0, jax.random.normal(k[4], (tokens, fan_out))


def relative_errors(got: Sequence[jax.Array], want: Sequence[jax.Array]) -> list[float]:
    """‖got - want‖ / ‖want‖ per gradient (float32 norms)."""
    return [
        float(jnp.linalg.norm((g - w).astype(jnp.float32)) / jnp.linalg.norm(w.astype(jnp.float32)))
        for g, w in zip(got, want, strict=True)
    ]


def rotating(fn: Callable[..., Any], sets: Sequence[tuple[jax.Array, ...]]) -> Callable[[int], Any]:
    """Call i runs ``fn`` on input set i mod len(sets)."""
    return lambda i: fn(*sets[i % len(sets)])


def run(
    tokens: Sequence[int], shapes: Sequence[tuple[int, int]], settings: TimingSettings
) -> list[dict[str, Any]]:
    """A row per (tokens, shape, form): ms per forward + backward and the gradient errors."""
    rows = []
    for m in tokens:
        for fan_in, fan_out in shapes:
            sets = [inputs(m, fan_in, fan_out, seed) for seed in range(settings.input_sets)]
            reference = gradient_fn(weight, train_factors=True)(*sets[0])
            for name, form in FORMS.items():
                trains = name != "frozen"
                fn = gradient_fn(form, train_factors=trains)
                errors = relative_errors(fn(*sets[0]), reference) if trains else []
                t = time_calls(rotating(fn, sets), sync=jax.block_until_ready, settings=settings)
                row = dict(tokens=m, fan_in=fan_in, fan_out=fan_out, form=name,
                           ms=t.median_s * 1e3, grad_rel_errors=errors)  # fmt: skip
                rows.append(row)
                print(f"M={m} {fan_in}x{fan_out} {name:12s} {row['ms']:8.3f} ms  "
                      f"rel. err. dx/dA/dB vs weight: {errors}", flush=True)  # fmt: skip
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.low_rank_layer", description=(__doc__ or "").splitlines()[0]
    )
    p.add_argument("--tokens", type=positive_int, nargs="+", default=[50432, 12608])
    p.add_argument(
        "--shapes", type=layer_shape, nargs="+", default=list(SHAPES), metavar="FAN_INxFAN_OUT"
    )
    p.add_argument("--repeats", type=positive_int, default=30)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    settings = TimingSettings(warmup=5, repeats=args.repeats, input_sets=3, window=5)
    rows = run(args.tokens, args.shapes, settings)
    if args.json is not None:
        args.json.write_text(json.dumps({"device": str(jax.devices()[0]), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    exit_on_error(main)
