"""GLoRA's five support tensors A..E, their options, and the weight/bias update they make.

One layer in Flax layout: W0 (fan_in, fan_out) is the kernel's matrix view, b0 (fan_out,) the
flattened bias. Each support tensor is ONE max-rank set of tensors (weight sharing); an option
picks a slice of it (torch names of the reference in brackets, there transposed):

    tensor  leaves                                        init
    A, B    x_in (fan_in, rmax) [X_up^T], x_out (rmax, fan_out) [X_down^T]   xavier, zeros
    C       c_in (fan_in, rmax) [C_down],  c_out (rmax, 1) [C_up]             zeros, xavier
    D, E    d, e (fan_out,)                                                   zeros

    option   A / B (fan_in, fan_out)          C (fan_in,)                  D / E (fan_out,)
    lora_r   x_in[:, :r] @ x_out[:r, :]       c_in[:, :r] @ c_out[:r, 0]   -
    vector   x_out[0, :] per output channel   c_in[:, 0]                   d
    scalar   x_out[0, 0]                      -                            d[0]
    none     0                                0                            0

Update (as the reference codes it, elementwise): W = W0 + W0 ⊙ A + B and
b = b0 + b0 ⊙ D + E + C W0, where the prompt C W0 = Σ_i C_i W0[i, :] is an (fan_out,) vector.
Both come from the original W0 (also in merge). Every option is an exact zero at init.
C, D, E exist only on layers with a bias: without a bias leaf there is nowhere to merge them.
The option index per tensor is data, so one compiled function serves every subnet: lora_r is a
rank mask ``arange(rmax) < r`` and the other options are ``jnp.where`` selections.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from glora_jax.supernet import CONFIG_AXIS
from peft_core.adapter import update_dtype

TENSORS = ("A", "B", "C", "D", "E")
#: Support tensors that only exist on layers with a bias.
BIAS_TENSORS = ("C", "D", "E")
NONE = "none"

Support = dict[str, jax.Array]


def tensor_options(ranks: Sequence[int]) -> dict[str, tuple[str, ...]]:
    """Option names per tensor, e.g. ranks (8, 4): A = (lora_8, lora_4, vector, scalar, none)."""
    lora = tuple(f"lora_{r}" for r in ranks)
    weight = (*lora, "vector", "scalar", NONE)
    bias = ("vector", "scalar", NONE)
    return {"A": weight, "B": weight, "C": (*lora, "vector", NONE), "D": bias, "E": bias}


def option_rank(option: str) -> int:
    """r of 'lora_<r>', 0 for the other options."""
    return int(option.removeprefix("lora_")) if option.startswith("lora_") else 0


def support_shapes(
    *, stack_shape: tuple[int, ...], fan_in: int, fan_out: int, rmax: int, has_bias: bool
) -> dict[str, tuple[int, ...]]:
    """Leaf shapes of one layer's support tensors (module table), leading ``stack_shape`` axes."""
    weight = {
        f"{x}_{side}": (*stack_shape, *shape)
        for x in ("a", "b")
        for side, shape in (("in", (fan_in, rmax)), ("out", (rmax, fan_out)))
    }
    if not has_bias:
        return weight
    bias = {"c_in": (fan_in, rmax), "c_out": (rmax, 1), "d": (fan_out,), "e": (fan_out,)}
    return weight | {k: (*stack_shape, *shape) for k, shape in bias.items()}


#: Leaves initialised xavier-uniform; all others start at zero.
XAVIER_LEAVES = ("a_in", "b_in", "c_out")


def init_supports(
    rng: jax.Array, layers: Sequence[Mapping[str, tuple[int, ...]]], *, dtype: Any
) -> list[Support]:
    """Support tensors of several layers from their ``support_shapes``.

    Xavier leaves are U(-b, b), b = sqrt(6 / (rows + cols)) of the trailing matrix (torch's
    xavier_uniform_), all cut from ONE uniform draw: a random kernel per leaf would make
    ``jax.jit(init)`` of a deep model compile for many seconds.
    """
    xavier = [shape for layer in layers for k, shape in layer.items() if k in XAVIER_LEAVES]
    sizes = [math.prod(shape) for shape in xavier]
    flat = jax.random.uniform(rng, (sum(sizes),), jnp.float32, -1.0, 1.0)
    noise = iter(jnp.split(flat, np.cumsum(sizes)[:-1]))
    return [
        {
            k: (next(noise).reshape(shape) * (6.0 / sum(shape[-2:])) ** 0.5).astype(dtype)
            if k in XAVIER_LEAVES
            else jnp.zeros(shape, dtype)
            for k, shape in layer.items()
        }
        for layer in layers
    ]


def glora_delta(
    w0: jax.Array,
    b0: jax.Array | None,
    support: Mapping[str, jax.Array],
    choice: jax.Array,
    *,
    options: Mapping[str, tuple[str, ...]],
    skip: frozenset[str] = frozenset(),
    dtype: Any = None,
) -> tuple[jax.Array | None, jax.Array | None]:
    """(ΔW, Δb) of one layer: ΔW = W0 ⊙ A + B (fan_in, fan_out), Δb = b0 ⊙ D + E + C W0.

    ``choice`` (5,) int holds the option index of A..E into ``options``; ``b0`` None means no
    bias (then Δb is None and columns C, D, E of ``choice`` are ignored). Computed in ``dtype``
    (None: f32 at least).
    ``skip``: tensors known before tracing to be "none" (``static_none``); their terms are left
    out instead of multiplied by zero, so nothing is computed or differentiated for them. ΔW (Δb)
    is None when all its terms are skipped: the kernel (bias) stays W0 (b0) and, with A and B
    skipped, the kernel's weight gradient is never formed (BitFit, SSF, searched subnets).
    """
    dtype = update_dtype(w0.dtype, dtype)
    w0 = w0.astype(dtype)
    s = {k: v.astype(dtype) for k, v in support.items()}
    weight_terms = []
    if "A" not in skip:
        weight_terms.append(w0 * _weight_tensor(s["a_in"], s["a_out"], choice[0], options["A"]))
    if "B" not in skip:
        weight_terms.append(_weight_tensor(s["b_in"], s["b_out"], choice[1], options["B"]))
    dw = _sum(weight_terms)
    if b0 is None:
        return dw, None
    bias_terms = []
    if "D" not in skip:
        bias_terms.append(b0.astype(dtype) * _bias_tensor(s["d"], choice[3], options["D"]))
    if "E" not in skip:
        bias_terms.append(_bias_tensor(s["e"], choice[4], options["E"]))
    if "C" not in skip:
        bias_terms.append(_prompt_tensor(s["c_in"], s["c_out"], choice[2], options["C"]) @ w0)
    return dw, _sum(bias_terms)


def static_none(choice: Any, options: Mapping[str, tuple[str, ...]]) -> frozenset[str]:
    """Tensors whose option is "none" in every row of ``choice`` (int (*stack, 5)) when its values
    are known at trace time (a concrete array, e.g. a fixed cfg closed over by a jitted step);
    the empty set for traced values (a cfg sampled in the step, vmapped cfgs)."""
    try:
        rows = np.asarray(choice).reshape(-1, len(TENSORS))
    except jax.errors.TracerArrayConversionError:
        return frozenset()
    return frozenset(
        t
        for i, t in enumerate(TENSORS)
        if NONE in options[t] and bool(np.all(rows[:, i] == options[t].index(NONE)))
    )


def _sum(terms: Sequence[jax.Array]) -> jax.Array | None:
    """terms[0] + terms[1] + ... in order; None for no terms."""
    return functools.reduce(operator.add, terms) if terms else None


def _weight_tensor(
    x_in: jax.Array, x_out: jax.Array, idx: jax.Array, options: tuple[str, ...]
) -> jax.Array:
    """A or B (fan_in, fan_out) as one product u @ v, whatever the option:

    u = [x_in with columns >= r zeroed | 1·is_vector | 1·is_scalar]   (fan_in, rmax + 2)
    v = [x_out ; x_out[0, :] ; x_out[0, 0]·1]                         (rmax + 2, fan_out)

    Under a vmap over several configs (``CONFIG_AXIS`` of size > 1) the same 0/1 mask also
    multiplies the rows of v (a no-op on the product): both operands then carry the config axis
    and the product is a batched GEMM with the config axis leading, instead of a weight-sized
    result with the config axis inside it that XLA transposes (H100, ViT-B, 4 subnets per step:
    9% faster; with one config it was 3% slower, so one config keeps the plain product).
    """
    on = jnp.stack([_is(idx, options, "vector"), _is(idx, options, "scalar")]).astype(x_in.dtype)
    u = jnp.concatenate([_rank_masked(x_in, idx, options), jnp.broadcast_to(on, (len(x_in), 2))], 1)
    v = jnp.concatenate([x_out, x_out[:1], jnp.full_like(x_out[:1], x_out[0, 0])], 0)
    if _several_configs():
        mask = jnp.concatenate([_rank_mask(x_in.shape[-1], idx, options).astype(v.dtype), on])
        v = mask[:, None] * v
    return u @ v


def _several_configs() -> bool:
    """Whether this is traced under a vmap named ``CONFIG_AXIS`` over more than one config."""
    try:
        return bool(jax.lax.axis_size(CONFIG_AXIS) > 1)
    except NameError:  # no such vmap
        return False


def _prompt_tensor(
    c_in: jax.Array, c_out: jax.Array, idx: jax.Array, options: tuple[str, ...]
) -> jax.Array:
    """C: (fan_in,)."""
    vector = jnp.where(_is(idx, options, "vector"), c_in[:, 0], 0.0)
    masked = _rank_masked(c_in, idx, options)
    c = c_out[:, 0]
    if _several_configs():  # see _weight_tensor
        c = _rank_mask(c_in.shape[-1], idx, options).astype(c.dtype) * c
    return masked @ c + vector


def _bias_tensor(x: jax.Array, idx: jax.Array, options: tuple[str, ...]) -> jax.Array:
    """D or E: (fan_out,) or a scalar."""
    return jnp.where(_is(idx, options, "vector"), x, 0.0) + jnp.where(
        _is(idx, options, "scalar"), x[0], 0.0
    )


def _rank_mask(rmax: int, idx: jax.Array, options: tuple[str, ...]) -> jax.Array:
    """(rmax,) bool: arange(rmax) < r, r = 0 for the non-lora options."""
    ranks = jnp.asarray([option_rank(o) for o in options])
    known = (idx >= 0) & (idx < len(options))  # an out-of-range index reads as none
    rank = jnp.where(known, ranks[jnp.clip(idx, 0, len(options) - 1)], 0)
    return jnp.arange(rmax) < rank


def _rank_masked(x_in: jax.Array, idx: jax.Array, options: tuple[str, ...]) -> jax.Array:
    """x_in (fan_in, rmax) with columns >= r zeroed: x_in[:, :r] @ x_out[:r] as a mask on data.

    r = 0 (all zero) for the non-lora options; gradients reach only the kept columns.
    """
    return jnp.where(_rank_mask(x_in.shape[-1], idx, options), x_in, 0.0)


def _is(idx: jax.Array, options: tuple[str, ...], option: str) -> jax.Array:
    """Whether option index ``idx`` selects ``option`` (False when the tensor lacks it)."""
    return idx == options.index(option) if option in options else jnp.asarray(False)
