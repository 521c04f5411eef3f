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

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

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


def init_support(
    key: jax.Array,
    *,
    stack_shape: tuple[int, ...],
    fan_in: int,
    fan_out: int,
    rmax: int,
    has_bias: bool,
    dtype: Any,
) -> Support:
    """Support tensors of one layer (see the module table), with leading ``stack_shape`` axes."""
    k_a, k_b, k_c = jax.random.split(key, 3)
    out = {
        "a_in": _xavier(k_a, (*stack_shape, fan_in, rmax), dtype),
        "a_out": jnp.zeros((*stack_shape, rmax, fan_out), dtype),
        "b_in": _xavier(k_b, (*stack_shape, fan_in, rmax), dtype),
        "b_out": jnp.zeros((*stack_shape, rmax, fan_out), dtype),
    }
    if has_bias:
        out |= {
            "c_in": jnp.zeros((*stack_shape, fan_in, rmax), dtype),
            "c_out": _xavier(k_c, (*stack_shape, rmax, 1), dtype),
            "d": jnp.zeros((*stack_shape, fan_out), dtype),
            "e": jnp.zeros((*stack_shape, fan_out), dtype),
        }
    return out


def _xavier(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    """U(-b, b), b = sqrt(6 / (rows + cols)) of the trailing matrix (torch's xavier_uniform_)."""
    bound = (6.0 / (shape[-2] + shape[-1])) ** 0.5
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def glora_delta(
    w0: jax.Array,
    b0: jax.Array | None,
    support: Mapping[str, jax.Array],
    choice: jax.Array,
    *,
    options: Mapping[str, tuple[str, ...]],
) -> tuple[jax.Array, jax.Array | None]:
    """(ΔW, Δb) of one layer: ΔW = W0 ⊙ A + B (fan_in, fan_out), Δb = b0 ⊙ D + E + C W0.

    ``choice`` (5,) int holds the option index of A..E into ``options``; ``b0`` None means no
    bias (then Δb is None and columns C, D, E of ``choice`` are ignored). Computed in f32 at least.
    """
    dtype = jnp.promote_types(w0.dtype, jnp.float32)
    w0 = w0.astype(dtype)
    s = {k: v.astype(dtype) for k, v in support.items()}
    a = _weight_tensor(s["a_in"], s["a_out"], choice[0], options["A"])
    b = _weight_tensor(s["b_in"], s["b_out"], choice[1], options["B"])
    dw = w0 * a + b
    if b0 is None:
        return dw, None
    c = _prompt_tensor(s["c_in"], s["c_out"], choice[2], options["C"])
    d = _bias_tensor(s["d"], choice[3], options["D"])
    e = _bias_tensor(s["e"], choice[4], options["E"])
    return dw, b0.astype(dtype) * d + e + c @ w0


def _weight_tensor(
    x_in: jax.Array, x_out: jax.Array, idx: jax.Array, options: tuple[str, ...]
) -> jax.Array:
    """A or B: (fan_in, fan_out), or a row / scalar that broadcasts to it."""
    lora = _low_rank(x_in, x_out, idx, options)
    return (
        lora + _pick(idx, options, "vector", x_out[0]) + _pick(idx, options, "scalar", x_out[0, 0])
    )


def _prompt_tensor(
    c_in: jax.Array, c_out: jax.Array, idx: jax.Array, options: tuple[str, ...]
) -> jax.Array:
    """C: (fan_in,)."""
    return _low_rank(c_in, c_out, idx, options)[:, 0] + _pick(idx, options, "vector", c_in[:, 0])


def _bias_tensor(x: jax.Array, idx: jax.Array, options: tuple[str, ...]) -> jax.Array:
    """D or E: (fan_out,) or a scalar."""
    return _pick(idx, options, "vector", x) + _pick(idx, options, "scalar", x[0])


def _low_rank(
    x_in: jax.Array, x_out: jax.Array, idx: jax.Array, options: tuple[str, ...]
) -> jax.Array:
    """x_in[:, :r] @ x_out[:r, :] as a rank mask; r = 0 (an exact zero) for non-lora options."""
    ranks = jnp.asarray([option_rank(o) for o in options])
    rank = jnp.take(ranks, idx, mode="fill", fill_value=0)
    keep = jnp.arange(x_in.shape[-1]) < rank
    return x_in @ jnp.where(keep[:, None], x_out, 0.0)


def _pick(idx: jax.Array, options: tuple[str, ...], option: str, value: jax.Array) -> jax.Array:
    """``value`` where ``idx`` selects ``option``, else 0 (gradients reach it only when chosen)."""
    return jnp.where(idx == options.index(option), value, 0.0)
