"""Low-rank factor gradients from activations instead of the full weight gradient.

An update dW = U V on a kernel's matrix view (U: (fan_in, r), V: (r, fan_out)) trained in
weight space runs the model on W_eff = W0 + U V, so autodiff forms dL/dW_eff = xᵀ dy, a
(fan_in, fan_out) weight gradient per layer as in full fine-tuning, and only then contracts it
to U and V. Here the train step runs the model on stop_gradient(W_eff) (the same forward and
input gradients) and passes each adapted layer's output y through
``gradient_tap(y, x, U, V, offset)``: y itself, dy on to y, and the VJP

    dU = xᵀ (dy Vᵀ),   dV = (x U)ᵀ dy        x: (M, fan_in), dy: (M, fan_out), M tokens

rank-r products that read x and dy, never a (fan_in, fan_out) gradient (f32 accumulation, or
x's dtype where wider); a layer whose input is x + offset for a vector offset (``Dense``'s
``input_offset``) adds offset ⊗ Σ_m g_m to dU and offset U to every row of x U. The tap
returns y, not a zero to add to it, so that under ``jax.vmap`` (GLoRA's K subnets, each on
its share of the batch) its output is batched as y is: a zero output depends on nothing
batched, and vmap would sum the K shares' dy before the VJP paired them with each share's x.

The tap needs each layer's input, so the model runs inside ``flax.linen.intercept_methods``
(the Flax model is not edited): the train-time apply puts U and V beside the kernel, under
``U_KEY`` / ``V_KEY`` (``nn.scan`` slices them with it), and every module that holds them gets
a tap on its output (``held`` says which layers). Which tap is decided per call, when the
layer's rows are known (``taps_activations``): ``gradient_tap`` above, or
``weight_gradient_tap``, y as well, whose VJP forms the layer's weight gradient G = xᵀ dy
once and gives dU = G Vᵀ, dV = Uᵀ G, the weight-space gradient; with grads "pallas",
``one_read_tap`` in place of ``gradient_tap``. Only the train step uses this
view (``Adapter.train``); evaluation, search and merge keep the weight-space ``apply``.

Limits: the view gives first derivatives only (a second one, e.g. grad of grad, misses U's and
V's effect through stop_gradient(W_eff)); and it sees a held kernel's uses through its module's
``__call__`` only: a kernel that a parent also reads directly gets no gradient from that read
(train such a model with grads="weight").
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from peft_core import one_read
from peft_core.adapter import ForwardFn, TrainView, add_delta, delta_dtype
from peft_core.layers import Layer
from peft_core.paths import Params, child, flatten, get_leaf, unflatten

#: How a train step forms low-rank factors' gradients (``held``, ``taps_activations``): "auto"
#: (the activation tap where it pays: wide layers, calls with many rows), "activation" (the
#: activation tap on every dense kernel), "weight" (autodiff through the weight-space apply),
#: "pallas" ("auto"'s layers and calls, each activation tap reading the wider of x and dy once:
#: ``one_read_tap``, which "auto" itself uses where it was timed faster, ``reads_once``; GPU
#: or CPU, not TPU).
GRADS = ("auto", "activation", "weight", "pallas")

#: "auto" holds a dense layer when its weight gradient xᵀ dy, 2 M fan_in fan_out FLOPs over
#: 2 M (fan_in + fan_out) bytes of bf16 x and dy, has at least this many FLOPs per byte: the
#: tap reads x and dy twice, so it wins only where that GEMM is bound by arithmetic, not by
#: memory. H200 (docs/benchmarks.md, calls 52-65): on ViT-B (384, 614) the tap gains 11% (and
#: tapping only the MLP's 614 loses 3.5% of it, call 65); on
#: ConvNeXt-T (77, 154, 307, 614 by stage) at batch 128 it loses 3% on every layer, 1.5% from 256
#: up, 0.6% from this threshold up (its last stage only: 6,272 tokens per step are too few).
MIN_TAP_INTENSITY = 320

#: ... and taps a held layer's call from activations from this many rows (tokens) per device up,
#: else from its weight gradient (``weight_gradient_tap``): with few rows the
#: tap's four skinny products cost more launches than the one weight-gradient GEMM saves
#: (ConvNeXt-T's last stage at batch 128, 6,272 rows: -0.6% for the step; ViT-B/16 at batch
#: 64, 12,672 rows: +0.3%; at 256, 50,688 rows: +11%; H200, calls 51-60). With the weight
#: tap below it, ConvNeXt-T at batch 128 trains within 0.5% of weight space (calls 76-78).
MIN_TAP_ROWS = 8192

#: ... and on these GPUs (``jax.Device.device_kind``) forms an activation tap's products with
#: the one-read kernel (``one_read_tap``) from this many rows per device up. H200: ViT-B/16's
#: LoRA step at batch 256 (50688 rows a call) 0.86 and 0.97 ms (1.7%, 1.9%) faster than with
#: the XLA tap on two H200s, FLoRA's 0.38 ms (calls 109-110); not timed below, so from two
#: programs of the default tiles (2 x 64 rows) per SM (132): 33792 rows. H100 SXM: at 256 LoRA
#: 1.52 ms (2.6%), FLoRA 2.05 ms (3.4%; call 112), at batch 64 (12672 rows) LoRA 1.12 ms (6%;
#: calls 119-120), FLoRA 1.33 ms (call 120), though one layer's backward alone was no faster
#: there (call 120); not timed below. docs/benchmarks.md has the runs. Not the H100 PCIe (114
#: SMs, slower HBM): never timed.
ONE_READ_MIN_ROWS: Mapping[str, int] = {"NVIDIA H200": 33_792, "NVIDIA H100 80GB HBM3": 12_672}

U_KEY = "lowrank_u"
V_KEY = "lowrank_v"

#: Module classes whose ``__call__(x, ...)`` returns x · kernel (+ bias) contracting x's trailing
#: axes with the kernel's leading ones, the only layers a tap may serve (its VJP assumes that
#: product); ``register_dense`` adds one. Flax's DenseGeneral qualifies with trailing ``axis``
#: and no ``batch_dims`` (checked per call).
_DENSE_MODULES: list[type[nn.Module]] = [nn.Dense, nn.DenseGeneral]


def register_dense(cls: type[nn.Module]) -> type[nn.Module]:
    """Let taps serve ``cls`` (a module whose ``__call__`` computes x · kernel + bias over x's
    trailing axes); returns ``cls``, so it also works as a class decorator. TypeError for
    anything but a flax.linen Module class (an instance, a function, an NNX class)."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        name = type(cls).__name__
        got = (
            f"a {name} instance: pass the class {name}" if isinstance(cls, nn.Module) else repr(cls)
        )
        raise TypeError(f"register_dense takes a flax.linen Module class, got {got}")
    if cls not in _DENSE_MODULES:
        _DENSE_MODULES.append(cls)
    return cls


#: ``factors(params, aparams, keep) -> {kernel path: (U (*stack, fan_in, r), V (*stack, r,
#: fan_out))}`` for the adapter's layers with ``keep(layer)``.
FactorsFn = Callable[
    [Params, Any, Callable[[Layer], bool]], Mapping[str, tuple[jax.Array, jax.Array]]
]


def tappable(layer: Layer) -> bool:
    """Whether the tap can serve ``layer``: a dense kernel, at most two input axes (Dense,
    DenseGeneral's (D, H, Dh) and (H, Dh, D)); conv kernels (kh, kw, cin, out) are not. A 1-D
    conv also has two input axes: when the model runs, "activation" refuses it, "auto" and
    "pallas" train it in weight space through its module (``_add_tap``)."""
    return len(layer.in_shape) <= 2


def held(grads: str, layer: Layer) -> bool:
    """Whether a train view with ``grads`` (``GRADS``) holds ``layer`` (stop_gradient(W_eff),
    U and V beside it, a tap on each call): "activation" every tappable layer, "auto" (and
    "pallas") those whose weight-gradient GEMM reaches ``MIN_TAP_INTENSITY`` FLOPs per byte,
    "weight" none. The layers
    not held train in weight space by autodiff through ``apply``."""
    if grads == "weight" or not tappable(layer):
        return False
    intensity = layer.fan_in * layer.fan_out / (layer.fan_in + layer.fan_out)
    return grads == "activation" or intensity >= MIN_TAP_INTENSITY


def per_device(n: int) -> int:
    """Rows (or examples) of a global batch of ``n`` on one device: split over the mesh in
    context (``jax.sharding.get_abstract_mesh``; the trainer's step sets it), else over every
    device (data parallelism over all, as the trainer runs); whole where the split does not
    divide ``n``."""
    mesh = jax.sharding.get_abstract_mesh()
    shards = jax.device_count() if mesh.empty else mesh.size
    return n // shards if n % shards == 0 else n


def taps_activations(grads: str, rows: int) -> bool:
    """Whether a call of a held layer on ``rows`` rows per device forms its factor gradients
    from activations (``gradient_tap``) rather than from its weight gradient
    (``weight_gradient_tap``): always with grads "activation", with "auto" and "pallas" from
    ``MIN_TAP_ROWS`` rows up."""
    return grads == "activation" or rows >= MIN_TAP_ROWS


def reads_once(grads: str, rows: int) -> bool:
    """Whether an activation tap of a call with ``rows`` rows per device reads the wider of x
    and dy once (``one_read_tap``) rather than twice (``gradient_tap``): always with grads
    "pallas"; with "auto" where every device's kind is in ``ONE_READ_MIN_ROWS``, from the
    largest of their thresholds up, where the kernel can run (``one_read.partitioned``: one
    device, or several under the step's mesh, which the trainer sets; and where this JAX still
    has Pallas' Triton backend, ``one_read.triton_available``)."""
    if grads == "pallas":
        return True
    if grads != "auto":
        return False
    kinds = {d.device_kind for d in jax.devices()}
    if not kinds <= ONE_READ_MIN_ROWS.keys():
        return False
    if rows < max(ONE_READ_MIN_ROWS[k] for k in kinds):
        return False
    return one_read.partitioned() and one_read.triton_available()


@jax.custom_vjp
def gradient_tap(
    y: jax.Array, x: jax.Array, u: jax.Array, v: jax.Array, offset: jax.Array | None
) -> jax.Array:
    """y (M, fan_out), the output of a layer y = (x + offset) (W + u v) for x (M, fan_in),
    u (fan_in, r), v (r, fan_out) (module docstring; offset (fan_in,) or None for none); its VJP
    passes dy on to y and gives u and v their gradients, x and offset none:

        dU = (x + offset)ᵀ g = xᵀ g + offset ⊗ Σ_m g_m,   dV = (x U + offset U)ᵀ dy,   g = dy Vᵀ
    """
    return y


def _tap_fwd(
    y: jax.Array, x: jax.Array, u: jax.Array, v: jax.Array, offset: jax.Array | None
) -> tuple[jax.Array, tuple[Any, ...]]:
    return y, (x, u, v, offset)


def factor_grads(
    x: jax.Array, u: jax.Array, v: jax.Array, offset: jax.Array | None, dy: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``gradient_tap``'s (dU, dV) for output gradient dy (M, fan_out): four XLA dots, h = x U,
    g = dy Vᵀ, dU = xᵀ g, dV = hᵀ dy, so x and dy are each read twice."""
    f32, dtype = jnp.promote_types(x.dtype, jnp.float32), x.dtype
    dy = dy.astype(dtype)
    h = jnp.dot(x, u.astype(dtype), preferred_element_type=f32)  # (M, r)
    g = jnp.dot(dy, v.astype(dtype).T, preferred_element_type=f32).astype(dtype)  # (M, r)
    du = jnp.einsum("mi,mr->ir", x, g, preferred_element_type=f32)
    if offset is not None:
        h = h + jnp.dot(offset.astype(f32), u.astype(f32))
        du = du + jnp.outer(offset.astype(f32), jnp.sum(g, axis=0, dtype=f32))
    dv = jnp.einsum("mr,mo->ro", h.astype(dtype), dy, preferred_element_type=f32)
    return du.astype(u.dtype), dv.astype(v.dtype)


#: A tap's VJP: (dy, None, dU, dV, None) for (y, x, u, v, offset).
TapGrads = tuple[jax.Array, None, jax.Array, jax.Array, None]


def _tap_bwd(res: tuple[Any, ...], dy: jax.Array) -> TapGrads:
    x, u, v, offset = res
    return dy, None, *factor_grads(x, u, v, offset, dy), None


gradient_tap.defvjp(_tap_fwd, _tap_bwd)


@jax.custom_vjp
def weight_gradient_tap(
    y: jax.Array, x: jax.Array, u: jax.Array, v: jax.Array, offset: jax.Array | None
) -> jax.Array:
    """y, as ``gradient_tap``, with the same gradients formed in weight space:

    G = (x + offset)ᵀ dy = xᵀ dy + offset ⊗ Σ_m dy_m   (fan_in, fan_out), f32,
    dU = G Vᵀ,   dV = Uᵀ G
    """
    return y


def _weight_tap_bwd(res: tuple[Any, ...], dy: jax.Array) -> TapGrads:
    x, u, v, offset = res
    f32 = jnp.promote_types(x.dtype, jnp.float32)
    g = jnp.einsum("mi,mo->io", x, dy.astype(x.dtype), preferred_element_type=f32)
    if offset is not None:
        g = g + jnp.outer(offset.astype(f32), jnp.sum(dy, axis=0, dtype=f32))
    du = jnp.dot(g, v.astype(f32).T)
    dv = jnp.dot(u.astype(f32).T, g)
    return dy, None, du.astype(u.dtype), dv.astype(v.dtype), None


weight_gradient_tap.defvjp(_tap_fwd, _weight_tap_bwd)


@jax.custom_vjp
def one_read_tap(
    y: jax.Array, x: jax.Array, u: jax.Array, v: jax.Array, offset: jax.Array | None
) -> jax.Array:
    """y, as ``gradient_tap``, with its gradients, the wider of x and dy read once: where
    fan_out >= fan_in, h = x U by XLA and (g, dVᵀ) = (dy Vᵀ, dyᵀ h) from one read of dy
    (``one_read.products``), then dU = xᵀ g; else g = dy Vᵀ by XLA and (h, dU) = (x U, xᵀ g)
    from one read of x, then dV = hᵀ dy."""
    return y


def one_read_factor_grads(
    x: jax.Array, u: jax.Array, v: jax.Array, offset: jax.Array | None, dy: jax.Array,
    tiles: one_read.Tiles | None = None,
) -> tuple[jax.Array, jax.Array]:  # fmt: skip
    """``factor_grads`` with the wider of x and dy read once (``one_read_tap``; the kernel's
    ``tiles``, default ``one_read.TILES``)."""
    f32, dtype = jnp.promote_types(x.dtype, jnp.float32), x.dtype
    dy, uc, vt = dy.astype(dtype), u.astype(dtype), v.astype(dtype).T
    shift = None if offset is None else jnp.dot(offset.astype(f32), u.astype(f32))  # offset U
    if dy.shape[1] >= x.shape[1]:
        h = jnp.dot(x, uc, preferred_element_type=f32)
        h = h if shift is None else h + shift
        g, dvt = one_read.products(dy, vt, h.astype(dtype), tiles)
        g = g.astype(dtype)
        du = jnp.einsum("mi,mr->ir", x, g, preferred_element_type=f32)
        dv = dvt.T
    else:
        g = jnp.dot(dy, vt, preferred_element_type=f32).astype(dtype)
        h, du = one_read.products(x, uc, g, tiles)
        h = h if shift is None else h + shift
        dv = jnp.einsum("mr,mo->ro", h.astype(dtype), dy, preferred_element_type=f32)
    if offset is not None:
        du = du + jnp.outer(offset.astype(f32), jnp.sum(g, axis=0, dtype=f32))
    return du.astype(u.dtype), dv.astype(v.dtype)


def _one_read_tap_bwd(res: tuple[Any, ...], dy: jax.Array) -> TapGrads:
    x, u, v, offset = res
    return dy, None, *one_read_factor_grads(x, u, v, offset, dy), None


one_read_tap.defvjp(_tap_fwd, _one_read_tap_bwd)


class NotDenseError(ValueError):
    """A module holding U and V that does not compute x · kernel over x's trailing axes."""


def _dense_call(module: nn.Module, args: Any, kwargs: Any) -> tuple[jax.Array, jax.Array | None]:
    """The input x of a dense module's ``__call__`` and its ``input_offset`` (None where not
    given), each positional or by name; NotDenseError unless the module computes x · kernel
    over x's trailing axes (``_DENSE_MODULES``)."""
    path = "/".join(module.path)
    if not isinstance(module, tuple(_DENSE_MODULES)):
        raise NotDenseError(
            f"activation-space gradients need a dense layer: {path} is a "
            f"{type(module).__name__}, not flax's Dense / DenseGeneral or a class registered with "
            "peft_core.register_dense (train it with grads='weight')"
        )
    arguments = inspect.signature(type(module).__call__).bind(module, *args, **kwargs).arguments
    x = list(arguments.values())[1]
    if isinstance(module, nn.DenseGeneral):
        axes = tuple(module.axis) if isinstance(module.axis, Sequence) else (module.axis,)
        trailing = sorted(a % x.ndim for a in axes) == list(range(x.ndim - len(axes), x.ndim))
        if module.batch_dims or not trailing:
            raise NotDenseError(
                f"activation-space gradients need a dense layer over trailing axes: {path} "
                f"contracts axis {module.axis} with batch_dims {module.batch_dims} (train it "
                "with grads='weight')"
            )
    return x, arguments.get("input_offset")


def _add_tap(
    grads: str, seen: set[str], next_fun: Callable[..., Any], args: Any, kwargs: Any, context: Any
) -> Any:
    """flax interceptor: tap(y, x, U, V, offset) for every module call holding U and V, the tap
    chosen by ``taps_activations`` and ``reads_once`` on the call's ``per_device`` rows; offset
    is the call's ``input_offset`` argument (``experiments.models.dense.Dense``) or None. Only
    dense modules are tapped (``_dense_call``): grads "activation" refuses any other, "auto"
    and "pallas" (which hold layers by their kernel's shape alone) run it on a kernel through
    which U and V get their weight-space gradients (``_through_kernel``). Each module's path
    goes into ``seen`` for ``tapped``'s check."""
    module = context.module
    if context.method_name != "__call__" or not module.has_variable("params", U_KEY):
        return next_fun(*args, **kwargs)
    seen.add("/".join(module.path))
    try:
        x, offset = _dense_call(module, args, kwargs)  # the layer's input is x + offset (Dense)
    except NotDenseError:
        if grads == "activation":
            raise
        return _through_kernel(module, args, kwargs)
    y = next_fun(*args, **kwargs)
    u, v = module.get_variable("params", U_KEY), module.get_variable("params", V_KEY)
    fan_in, fan_out = u.shape[-2], v.shape[-1]
    tokens = x.size // fan_in
    if u.ndim != 2 or x.size % fan_in or y.size != tokens * fan_out:
        raise ValueError(
            f"activation-space gradients need a dense layer, x (..., {fan_in}) -> y (..., "
            f"{fan_out}) with U {u.shape}; {'/'.join(module.path)} maps {x.shape} to {y.shape} "
            "(use grads='weight' for convolutions; a bias-less DenseGeneral with several output "
            "axes needs the adapter's out_axes=)"
        )
    if offset is not None:  # in the compute dtype, as the layer adds it (like x below)
        offset = offset.reshape(fan_in).astype(y.dtype)
    rows = per_device(tokens)
    if not taps_activations(grads, rows):
        tap = weight_gradient_tap
    elif reads_once(grads, rows):
        tap = one_read_tap
    else:
        tap = gradient_tap
    inputs = x.reshape(tokens, fan_in).astype(y.dtype)
    return tap(y.reshape(tokens, fan_out), inputs, u, v, offset).reshape(y.shape)


def _through_kernel(module: nn.Module, args: Any, kwargs: Any) -> Any:
    """The module's own ``__call__`` on its kernel stop_gradient(W0 + U V) plus
    U V - stop_gradient(U V): the same values, and autodiff through the module gives U and V
    the weight-space gradients. For a module the tap cannot serve (a 1-D conv, a kernel read
    after a norm); its kernel is the one param of U V's size."""
    variables = dict(module.variables)
    params = dict(variables["params"])
    u, v = params.pop(U_KEY), params.pop(V_KEY)
    size = u.shape[-2] * v.shape[-1]
    kernels = [k for k, leaf in params.items() if isinstance(leaf, jax.Array) and leaf.size == size]
    if len(kernels) != 1:
        raise ValueError(
            f"{'/'.join(module.path)} holds low-rank factors U {u.shape}, V {v.shape} and "
            f"{len(kernels)} params of their product's size {size} ({kernels}): train it with "
            "grads='weight'"
        )
    (name,) = kernels
    kernel = params[name]
    dtype = delta_dtype(kernel.dtype, u.dtype, v.dtype)  # as the train view forms U V
    product = u.astype(dtype) @ v.astype(dtype)
    params[name] = add_delta(
        kernel, (product - jax.lax.stop_gradient(product)).reshape(kernel.shape)
    )  # + 0 in value
    variables["params"] = params
    return module.clone(parent=None).apply(variables, *args, **kwargs)


def tapped(forward: ForwardFn, grads: str = "activation") -> ForwardFn:
    """``forward`` with a tap on every module whose params hold U and V (``_add_tap``).

    A module holding U and V that the forward never calls through ``__call__`` (a kernel used
    by another method, or by its parent) would get no gradient at all: that is a ValueError
    when the forward is traced."""
    if grads not in ("auto", "activation", "pallas"):
        raise ValueError(f"tapped takes grads 'auto', 'activation' or 'pallas', got {grads!r}")

    def run(params: Params, images: jax.Array, **kwargs: Any) -> jax.Array:
        seen: set[str] = set()
        with nn.intercept_methods(functools.partial(_add_tap, grads, seen)):
            out = forward(params, images, **kwargs)
        paths = (k.removeprefix("params/").rpartition("/") for k in flatten(params))
        holding = {module for module, _, key in paths if key == U_KEY}
        if missed := sorted(holding - seen):
            raise ValueError(
                f"{len(missed)} layer(s) hold low-rank factors but were never called as a dense "
                f"module's __call__, so no tap could give them gradients: {missed[:5]} (train "
                "them with grads='weight')"
            )
        return out

    return run


@functools.cache
def tapping(grads: str) -> Callable[[ForwardFn], ForwardFn]:
    """``forward -> tapped(forward, grads)``, one function per ``grads``: views that share it
    can run under one interceptor (``peft_core.combine``)."""
    return functools.partial(tapped, grads=grads)


def activation_train_view(
    weight_apply: Callable[..., Params], factors: FactorsFn, grads: str = "activation"
) -> TrainView:
    """The train view of a weight-space ``apply`` whose update on each kernel that ``factors``
    returns for ``held(grads, layer)`` is U V. aparams must mirror the param tree (each layer's
    leaves under its module path, as LoRA's): the held kernels run as stop_gradient(W0 + U V),
    formed from the same U and V (one rank-r product per layer; ``weight_apply``'s own form of
    them, e.g. FLoRA's Tucker product, is left out), and their leaves reach the loss through U
    and V beside the kernels (``tapped(forward, grads)`` picks each call's tap); any other layer
    stays in weight space, as ``weight_apply`` forms it."""

    def apply(params: Params, aparams: Any, cfg: Any = None) -> Params:
        pairs = factors(params, aparams, functools.partial(held, grads))
        if not pairs and grads != "auto":  # "auto" holds layers only where the tap pays
            warnings.warn(_HOLDS_NONE[grads], stacklevel=2)
        # weight_apply's held kernels are replaced below: unused, they carry no gradient and
        # XLA drops their computation
        eff = flatten(weight_apply(params, aparams, cfg))
        for kernel_path, (u, v) in pairs.items():
            module = kernel_path.rpartition("/")[0]  # "" for a kernel at the tree's root
            w0 = get_leaf(params, kernel_path)
            dtype = delta_dtype(w0.dtype, u.dtype, v.dtype)
            product = jax.lax.stop_gradient(u.astype(dtype) @ v.astype(dtype))
            eff[kernel_path] = add_delta(w0, product.reshape(w0.shape))
            eff[child(module, U_KEY)], eff[child(module, V_KEY)] = u, v
        return unflatten(eff)

    return TrainView(apply, tapping(grads))


_HOLDS_NONE = {
    "activation": "grads='activation' holds no adapted layer: none is a dense kernel the "
    "activation tap serves (convolutions are not), so every one trains in weight space, as "
    "with grads='weight'",
    "pallas": f"grads='pallas' holds no adapted layer: it holds 'auto''s, dense kernels whose "
    f"weight-gradient GEMM reaches {MIN_TAP_INTENSITY} FLOPs per byte, and none does, so every "
    "one trains in weight space, as with grads='weight' (grads='activation' taps them all)",
}


def train_view(
    grads: str, weight_apply: Callable[..., Params], factors: FactorsFn, *, what: str
) -> TrainView | None:
    """The ``Adapter.train`` of an adapter named ``what``: ``activation_train_view`` unless
    ``grads="weight"``: None, the train step differentiates ``weight_apply``."""
    if grads not in GRADS:
        raise ValueError(f"{what} grads must be one of {GRADS}, got {grads!r}")
    if grads == "weight":
        return None
    return activation_train_view(weight_apply, factors, grads)
