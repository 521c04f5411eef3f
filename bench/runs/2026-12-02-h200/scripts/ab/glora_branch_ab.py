"""A/B prototype (not project code; written in the twenty-fourth session, which had no device,
checked on the CPU only): GLoRA's train step forming the weight gradient G = xᵀ dy only on the
layers whose sampled A needs it, one ``lax.cond`` per dense call.

Why: GLoRA K=1 at 256 (62.60 ms, call 96) is LoRA's weight-space step (59.60) plus its bias
gradients; LoRA's own step (53.49) never forms G. 0.9x LoRA needs <= 59.4 ms. A support that is
a LoRA needs G (dA = G ⊙ W0 does not factor through activations), two in five layers under
uniform sampling of the large space's A options (lora_8, lora_4, vector, scalar, none). The
other three can do without it:

    y = x W_eff + b,  W_eff = W0 ⊙ (1 + α) + B,  α = a (vector, per output column), s (scalar) or 0
    dL/dα_j = Σ_i W0_ij G_ij = Σ_m y0_mj dy_mj,  y0 = x W0 = (y - b - x B) / (1 + α)
    Σ_m (x B)_mj dy_mj = Σ_k v_kj (hᵀ dy)_kj,    h = x u  (B = u v, the tap's own product)

so the layer's output y (a residual anyway for fc1's GELU and q/k/v's attention) and B's
activation tap give A's gradient with one column pass over y ⊙ dy instead of the GEMM and its
W0 ⊙ G pass. Where |1 + α| < 1/2 in some column the division would lose precision: those
layers take the weight form too. Exactness: the same numbers as weight space up to rounding
(the check below: f32, every option of A and B, traced and concrete cfgs).

The train view (``GLORA_VIEW=branch``): the kernels run as W_eff with A's and B's leaves held
(stop_gradient; C, D, E keep autodiff through the bias), and each dense call adds
``glora_tap(x, y, W0, U_A, V_A, U_B, V_B, α, b, offset, need)``, zero, whose VJP is
``lax.cond(need, weight form, activation form)`` (a concrete cfg, glora-fixed: chosen when
tracing, no branch). ``U, V`` are ``glora_jax.support._weight_tensor``'s factors. The K=1
supernet must not be a vmap over one config (a vmapped cond runs both branches):
``experiments.training.step.supernet_loss`` is patched to call the one subnet's loss directly,
with the same random draws.

    JAX_PLATFORMS=cpu python glora_branch_ab.py --check
    GLORA_VIEW=novmap ...               # the code with only the K=1 vmap removed
    GLORA_BRANCH_LAYERS=MlpBlock ...    # branch on the MLP's layers only
    GLORA_VIEW=branch python glora_branch_ab.py --json out.json --suites train \\
        --train-batches 256 --only '^jax/train/(glora-supernet-k1|glora-fixed)@256$'
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import glora_jax
from bench import jax_suite
from experiments.training import step as train_step
from glora_jax import supernet
from glora_jax.adapter import QKV_FUSE, glora_layers
from glora_jax.support import _is, _rank_masked
from peft_core.activation_grads import TrainView
from peft_core.paths import flatten, get_leaf, unflatten
from peft_core.targets import DENSE_TARGETS

MODE = os.environ.get("GLORA_VIEW", "code")
KEYS = (
    "glora_w0", "glora_ua", "glora_va", "glora_ub", "glora_vb", "glora_alpha", "glora_need",
    "glora_bias",
)  # fmt: skip
#: "tap": the tap forms the bias gradients too (the layer's bias held, except key's and
#: value's, whose outputs add none); "dense": the layer's own (``bias_grad``)
BIAS = os.environ.get("GLORA_BIAS", "tap")
#: 1: the weight form's GEMM forms the bias gradient as [x | 1]ᵀ dy
ONES = os.environ.get("GLORA_ONES", "0") == "1"
#: layers (regex over the GLoRA layer name) that branch; the others always take the weight form
#: (one layer alone, call 50: LoRA's activation form lost on 768x768 and won on the MLP's)
BRANCH_LAYERS = re.compile(os.environ.get("GLORA_BRANCH_LAYERS", ".*"))
HELD = ("a_in", "a_out", "b_in", "b_out")
#: |1 + α| below this in any column: the weight form (no division by a small number)
MIN_SCALE = 0.5


def factors(
    x_in: jax.Array, x_out: jax.Array, idx: jax.Array, options: tuple[str, ...]
) -> tuple[jax.Array, jax.Array]:
    """(u (fan_in, rmax + 2), v (rmax + 2, fan_out)) with u v = A or B (``_weight_tensor``)."""
    on = jnp.stack([_is(idx, options, "vector"), _is(idx, options, "scalar")]).astype(x_in.dtype)
    u = jnp.concatenate([_rank_masked(x_in, idx, options), jnp.broadcast_to(on, (len(x_in), 2))], 1)
    v = jnp.concatenate([x_out, x_out[:1], jnp.full_like(x_out[:1], x_out[0, 0])], 0)
    return u, v


# --- the tap ---------------------------------------------------------------------------------


def _zeros(x: jax.Array, vb: jax.Array) -> jax.Array:
    return jnp.zeros((x.shape[0], vb.shape[1]), x.dtype)


@jax.custom_vjp
def glora_tap(x, y, w0, ua, va, ub, vb, alpha, bias, offset, need):  # noqa: ANN001, ANN201
    """Zeros (M, fan_out); its VJP gives (ua, va, ub, vb, bias) the gradients of
    y = (x + offset) W_eff + bias, W_eff = W0 + W0 ⊙ (ua va) + ub vb (module docstring), the rest
    none. ``bias`` None: the layer adds none (y0 recovery without it, no bias gradient)."""
    return _zeros(x, vb)


def _fwd(x, y, w0, ua, va, ub, vb, alpha, bias, offset, need):  # noqa: ANN001, ANN202
    return _zeros(x, vb), (x, y, w0, ua, va, ub, vb, alpha, bias, offset, need)


def weight_form(x, dy, w0, ua, va, ub, vb, offset):  # noqa: ANN001, ANN201
    """G = (x + offset)ᵀ dy once (with ``ONES``: [x | 1]ᵀ dy, the bias gradient its last row);
    A's factors from G ⊙ W0, B's from G (f32 at least)."""
    f32 = jnp.promote_types(x.dtype, jnp.float32)
    fan_in = x.shape[1]
    if ONES:
        width = -(-(fan_in + 1) // 8) * 8
        extra = jnp.zeros((x.shape[0], width - fan_in), x.dtype).at[:, 0].set(1)
        both = jnp.einsum(
            "mi,mo->io", jnp.concatenate([x, extra], 1), dy, preferred_element_type=f32
        )
        g, gb = both[:fan_in], both[fan_in]
    else:
        g = jnp.einsum("mi,mo->io", x, dy, preferred_element_type=f32)
        gb = jnp.sum(dy, axis=0, dtype=f32)
    if offset is not None:
        g = g + jnp.outer(offset.astype(f32), gb)
    gw = g * w0.astype(f32)
    return (
        gw @ va.astype(f32).T,
        ua.astype(f32).T @ gw,
        g @ vb.astype(f32).T,
        ub.astype(f32).T @ g,
        gb,
    )


def activation_form(x, y, dy, ua, ub, vb, alpha, bias, offset):  # noqa: ANN001, ANN201
    """A not a LoRA: B's factors from activations (``gradient_tap``'s products), A's vector /
    scalar row from Σ_m y0 ⊙ dy with y0 recovered from y; the bias gradient Σ_m dy."""
    f32, dtype = jnp.promote_types(x.dtype, jnp.float32), x.dtype
    h = jnp.dot(x, ub.astype(dtype), preferred_element_type=f32)  # (M, r + 2)
    g = jnp.dot(dy, vb.astype(dtype).T, preferred_element_type=f32).astype(dtype)
    dub = jnp.einsum("mi,mr->ir", x, g, preferred_element_type=f32)
    if offset is not None:
        h = h + jnp.dot(offset.astype(f32), ub.astype(f32))
        dub = dub + jnp.outer(offset.astype(f32), jnp.sum(g, axis=0, dtype=f32))
    dvb = jnp.einsum("mr,mo->ro", h.astype(dtype), dy, preferred_element_type=f32)
    yd = jnp.sum(y.astype(f32) * dy.astype(f32), axis=0)
    gb = jnp.sum(dy, axis=0, dtype=f32)
    y0d = yd - jnp.sum(vb.astype(f32) * dvb, axis=0)
    if bias is not None:
        y0d = y0d - bias.astype(f32) * gb
    s = y0d / (1 + alpha)
    dva = ua[0].astype(f32)[:, None] * s[None, :]  # u_A's columns are constant: 0, vec, scalar
    return jnp.zeros(ua.shape, f32), dva, dub, dvb, gb


def _bwd(res, dy):  # noqa: ANN001, ANN202
    x, y, w0, ua, va, ub, vb, alpha, bias, offset, need = res
    dy = dy.astype(x.dtype)
    weight = functools.partial(weight_form, x, dy, w0, ua, va, ub, vb, offset)
    act = functools.partial(activation_form, x, y, dy, ua, ub, vb, alpha, bias, offset)
    try:
        static = bool(np.asarray(need))
    except jax.errors.TracerArrayConversionError:
        out = lax.cond(need, weight, act)
    else:
        out = weight() if static else act()
    dua, dva, dub, dvb = (o.astype(t.dtype) for o, t in zip(out[:4], (ua, va, ub, vb), strict=True))
    dbias = None if bias is None else out[4].astype(bias.dtype)
    return None, None, None, dua, dva, dub, dvb, None, dbias, None, None


glora_tap.defvjp(_fwd, _bwd)


def _add_tap(next_fun: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
    y = next_fun(*args, **kwargs)
    module = context.module
    if context.method_name != "__call__" or not module.has_variable("params", KEYS[0]):
        return y
    w0, ua, va, ub, vb, alpha, need, bias = (module.get_variable("params", k) for k in KEYS)
    x = args[0]
    fan_in, fan_out = w0.shape
    tokens = x.size // fan_in
    if getattr(module, "skip_bias", False):
        bias = None  # key, value: their outputs add no bias (value's enters out's offset)
    elif BIAS == "tap":
        bias = bias.reshape(fan_out)  # differentiable here, held in the module
    else:
        bias = lax.stop_gradient(module.get_variable("params", "bias").reshape(fan_out))
    offset = kwargs.get("input_offset")
    if offset is not None:
        offset = offset.reshape(fan_in)
    x2 = x.reshape(tokens, fan_in).astype(y.dtype)
    tap = glora_tap(x2, y.reshape(tokens, fan_out), w0, ua, va, ub, vb, alpha, bias, offset, need)
    return y + tap.reshape(y.shape)


# --- the train view --------------------------------------------------------------------------


def branch_view(adapter: Any) -> TrainView:
    """GLoRA's train view (module docstring) for an unscanned model with the default targets."""
    find = functools.partial(
        glora_layers, targets=DENSE_TARGETS, exclude=None, stacked=None, fuse=QKV_FUSE
    )

    def apply(params: Any, aparams: Any, cfg: Any) -> Any:
        options = adapter.space(params).options
        flat = flatten(aparams)
        held = {
            k: lax.stop_gradient(v) if k.rsplit("/", 1)[1] in HELD else v for k, v in flat.items()
        }
        eff = flatten(adapter.apply(params, unflatten(held), cfg))
        biases = {}
        for layer in find(params):
            for m in layer.members:
                if m.bias_path is not None:
                    biases[m.kernel_path] = eff[str(m.bias_path)]
                    if BIAS == "tap" and m.kernel_path.split("/")[-2] not in ("key", "value"):
                        eff[str(m.bias_path)] = lax.stop_gradient(eff[str(m.bias_path)])
        for layer in find(params):
            sup = {k: flat[f"{layer.name}/{k}"] for k in HELD}
            row = cfg[layer.name]
            concrete = not isinstance(row, jax.core.Tracer)
            idx = np.asarray(row) if concrete else row
            ua, va = factors(sup["a_in"], sup["a_out"], idx[0], options["A"])
            ub, vb = factors(sup["b_in"], sup["b_out"], idx[1], options["B"])
            a = lax.stop_gradient(sup["a_out"][0])
            alpha = jnp.where(_is(idx[0], options["A"], "vector"), a, 0.0) + jnp.where(
                _is(idx[0], options["A"], "scalar"), a[0], 0.0
            )
            lora = idx[0] < sum(o.startswith("lora_") for o in options["A"])
            small = jnp.any(jnp.abs(1 + alpha) < MIN_SCALE)
            need: Any = jnp.logical_or(lora, small)
            if not BRANCH_LAYERS.search(layer.name):
                need = np.asarray(True)
            elif concrete and (bool(lora) or options["A"][int(idx[0])] == "none"):
                need = np.asarray(bool(lora))  # known when tracing: no branch
            lo = 0
            for m in layer.members:
                hi = lo + m.fan_out
                module = m.kernel_path.rsplit("/", 1)[0]
                w0 = get_leaf(params, m.kernel_path).reshape(m.fan_in, m.fan_out)
                bias = biases.get(m.kernel_path, jnp.zeros((m.fan_out,), w0.dtype))
                beside = (w0, ua, va[:, lo:hi], ub, vb[:, lo:hi], alpha[lo:hi], need, bias)
                for k, v in zip(KEYS, beside, strict=True):
                    eff[f"{module}/{k}"] = v
                lo = hi
        return unflatten(eff)

    def wrap_forward(forward: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
        def run(params: Any, images: jax.Array, **kwargs: Any) -> jax.Array:
            with nn.intercept_methods(_add_tap):
                return forward(params, images, **kwargs)

        return run

    return TrainView(apply, wrap_forward)


def one_subnet_loss(config_loss: Any, space: Any, *, num_configs: int = 1) -> Any:
    """``supernet_loss`` without the vmap when K = 1 (same draws); K > 1 unchanged."""
    if num_configs != 1:
        return supernet.supernet_loss(config_loss, space, num_configs=num_configs)

    def loss(trainable: Any, images: jax.Array, labels: jax.Array, rng: jax.Array) -> Any:
        cfg_rng, model_rng = jax.random.split(rng)
        cfgs = space.sample(cfg_rng, (1,))
        cfg = jax.tree.map(lambda c: c[0], cfgs)
        value, metrics = config_loss(
            trainable, images, labels, cfg, jax.random.split(model_rng, 1)[0]
        )
        return value, {**metrics, "configs": cfgs}

    return loss


def _patch() -> None:
    original = glora_jax.glora

    def with_view(*args: Any, **kwargs: Any) -> Any:
        adapter = original(*args, **kwargs)
        return adapter._replace(train=branch_view(adapter))

    glora_jax.glora = with_view
    train_step.supernet_loss = one_subnet_loss


# --- the check -------------------------------------------------------------------------------


def check() -> None:
    """f64 2-block ViT-Ti: gradients of the view against weight space, for cfgs with every
    layer's A (then B) set to each option, random C/D/E, traced and concrete; plus a layer whose
    1 + a nears 0 (weight form by the guard)."""
    from experiments.models import vit

    jax.config.update("jax_enable_x64", True)  # the weight-space reference's own rounding is
    # amplified in cancelling sums (a scalar B's Σ G): compare in f64
    f64 = functools.partial(jax.tree.map, lambda a: a.astype(jnp.float64))
    model = vit.vit("Ti", patch=16, depth=2, num_classes=5, dtype=jnp.float64)
    images = jax.random.normal(jax.random.key(0), (4, 32, 32, 3), jnp.float64)
    labels = jnp.arange(4) % 5
    params = f64(model.init(jax.random.key(1), images)["params"])
    head = params["head"]["kernel"]  # zero-initialised: no gradient would reach the body
    params["head"]["kernel"] = jax.random.normal(jax.random.key(9), head.shape, head.dtype)
    adapter = glora_jax.glora((8, 4))
    view = branch_view(adapter)
    keys = iter(jax.random.split(jax.random.key(2), 1000))
    aparams = jax.tree.map(
        lambda a: a + 0.1 * jax.random.normal(next(keys), a.shape, jnp.float64),
        f64(adapter.init(jax.random.key(3), params)),
    )
    space = adapter.space(params)

    def loss(ap: Any, cfg: Any, apply: Any, fwd: Any) -> jax.Array:
        logits = fwd({"params": apply(params, ap, cfg)}, images)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels])

    def forward(variables: Any, x: jax.Array) -> jax.Array:
        return model.apply(variables, x)

    want_fn = jax.jit(jax.grad(functools.partial(loss, apply=adapter.apply, fwd=forward)))
    viewed = view.wrap_forward(forward)
    got_fn = jax.jit(jax.grad(functools.partial(loss, apply=view.apply, fwd=viewed)))

    cfgs = []
    for t in (0, 1):
        for k, option in enumerate(space.options["ABCDE"[t]]):
            cfg = {n: np.asarray(v).copy() for n, v in space.sample(next(keys)).items()}
            for v in cfg.values():
                v[t] = k
            cfgs.append((f"{'AB'[t]}={option}", cfg))
    near = flatten(aparams)
    name = f"{sorted(cfgs[2][1])[1]}/a_out"
    near[name] = near[name].at[0, :3].set(-0.9)  # α ≈ -0.9 on a vector A
    near = unflatten(near)
    cases = [(n, c, aparams) for n, c in cfgs] + [("A=vector, 1+a≈0.1", cfgs[2][1], near)]
    for label, cfg, ap in cases:
        want = want_fn(ap, cfg)
        for how, got in [
            ("traced", got_fn(ap, cfg)),
            ("concrete", jax.jit(jax.grad(lambda a, c=cfg: loss(a, c, view.apply, viewed)))(ap)),
        ]:
            # each leaf's error against its own largest gradient, floored at 1e-3 of the largest
            # of all: some gradients are zero in exact arithmetic (a scalar B of a layer that
            # feeds LayerNorms only: Σ_j dy_mj = 0) and hold rounding noise
            top = max(float(jnp.max(jnp.abs(w))) for w in jax.tree.leaves(want))
            worst, leaf = max(
                (float(jnp.max(jnp.abs(g - w)) / (jnp.max(jnp.abs(w)) + 1e-3 * top)), k)
                for (k, g), w in zip(flatten(got).items(), flatten(want).values(), strict=True)
            )
            print(f"{label:20s} {how:10s}: worst leaf |diff| / (max |grad| + 1e-3 top) "
                  f"{worst:.1e} ({leaf.split('/', 2)[-1]})")  # fmt: skip
            assert worst < 1e-9, (label, how, worst)
    # bf16 compute (the benchmark's): the view against weight space, both against f64
    model16 = vit.vit("Ti", patch=16, depth=2, num_classes=5, dtype=jnp.bfloat16)
    p32, a32 = (jax.tree.map(lambda a: a.astype(jnp.float32), t) for t in (params, aparams))

    def loss16(ap: Any, cfg: Any, apply: Any, fwd: Any) -> jax.Array:
        logits = fwd({"params": apply(p32, ap, cfg)}, images.astype(jnp.float32))
        logits = logits.astype(jnp.float32)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels])

    def forward16(variables: Any, x: jax.Array) -> jax.Array:
        return model16.apply(variables, x)

    for label, cfg, _ in cases[2:4] + cases[:1]:
        ref = flatten(want_fn(aparams, cfg))
        line = []
        for how, apply, fwd in [
            ("weight space", adapter.apply, forward16),
            ("view", view.apply, view.wrap_forward(forward16)),
        ]:
            got = flatten(
                jax.jit(jax.grad(functools.partial(loss16, apply=apply, fwd=fwd)))(a32, cfg)
            )
            top = max(float(jnp.linalg.norm(r)) for r in ref.values())
            errs = [
                float(jnp.linalg.norm(got[k] - ref[k]) / jnp.linalg.norm(ref[k]))
                for k in ref
                if float(jnp.linalg.norm(ref[k])) > 1e-3 * top
            ]
            line.append(f"{how} median {np.median(errs):.1e} max {max(errs):.1e}")
        print(f"bf16 {label:10s} |grad - f64| / |f64| per leaf: " + ", ".join(line))
    sampled = space.sample(next(keys))
    lossfn = one_subnet_loss(
        lambda tr, x, y, c, r: (jnp.sum(x) * 0 + c[sorted(c)[0]][0], {"m": jnp.zeros(())}),
        space,
    )
    print("one_subnet_loss draws match the vmapped K=1:", bool(
        jnp.all(lossfn(None, images, labels, jax.random.key(7))[1]["configs"][sorted(sampled)[0]]
                == supernet.supernet_loss(lambda tr, x, y, c, r: (jnp.sum(x) * 0.0, {}), space)(
                    None, images, labels, jax.random.key(7))[1]["configs"][sorted(sampled)[0]])
    ))  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        check()
        sys.exit(0)
    print("GLORA_VIEW:", MODE, flush=True)
    if MODE == "branch":
        _patch()
    elif MODE == "novmap":  # the code's weight-space step, the K=1 supernet without the vmap
        train_step.supernet_loss = one_subnet_loss
    elif MODE != "code":
        sys.exit(f"GLORA_VIEW must be code, branch or novmap, got {MODE!r}")
    sys.exit(jax_suite.main(sys.argv[1:]))
