"""Adaptable layers found in a param tree: a kernel, its optional bias and how to read it.

A kernel of shape ``stack + in_shape + out_shape`` is viewed as a matrix (fan_in, fan_out):
- ``stack``: leading axes of layers stacked by ``nn.scan`` (one adapter per slice);
- ``out_shape``: the bias shape when there is a bias, else the last axis;
- ``in_shape``: the rest. Dense (in, out); DenseGeneral q/k/v (D, H, Dh) with bias (H, Dh);
  attention out (H, Dh, D); conv HWIO (kh, kw, in/groups, out) with in_shape (kh, kw, in/groups).
A bias-less kernel of 3 or more axes reads as a conv's (last axis out), except a 3-axis one
of a module named query, key or value (``ATTENTION_QKV``), read as nn.MultiHeadDotProductAttention's
(D, H, Dh) -> out (H, Dh); ``out_axes={pattern: n}`` says how many trailing axes are out_shape
where neither fits. A transposed conv's kernel with ``transpose_kernel=True`` (kh, kw, out, in)
has its out axis before its in axis: no reading fits it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from peft_core.adapter import trainable_float
from peft_core.paths import (
    Params,
    Patterns,
    as_patterns,
    check_patterns,
    child,
    flatten,
    matches,
    select,
)

#: Module names of nn.MultiHeadDotProductAttention's input projections, DenseGeneral kernels
#: (D, H, Dh) whose out_shape is (H, Dh) with or without a bias.
ATTENTION_QKV = ("query", "key", "value")


@dataclasses.dataclass(frozen=True)
class Layer:
    """One targeted kernel. Shapes exclude nothing: ``kernel_shape == stack+in_shape+out_shape``."""

    kernel_path: str
    bias_path: str | None
    stack_shape: tuple[int, ...]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    @property
    def name(self) -> str:
        """Module path: the kernel path without its trailing '/kernel'."""
        return self.kernel_path.rsplit("/", 1)[0]

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        return self.stack_shape + self.in_shape + self.out_shape

    @property
    def fan_in(self) -> int:
        return math.prod(self.in_shape)

    @property
    def fan_out(self) -> int:
        return math.prod(self.out_shape)


def find_layers(
    params: Params,
    targets: Patterns,
    *,
    exclude: Patterns | None = None,
    stacked: Patterns | None = None,
    out_axes: Mapping[str, int] | None = None,
) -> list[Layer]:
    """Every kernel whose path matches ``targets`` (regexes over '/'-joined paths).

    ``stacked``: patterns of kernel paths that carry one leading ``nn.scan`` layer axis.
    ``out_axes``: {kernel-path regex: n}, the kernel's last n axes are its out_shape (default:
    its bias's shape, or the last axis without a bias). Raises ValueError for targets None, a
    pattern (target, exclude, stacked or out_axes) that matches no param path (an out_axes one:
    no targeted kernel), targets that ``exclude`` removes entirely, a param key holding '/', a
    matched leaf that is not a float kernel-like array (ndim < 2 once the stack axis is removed),
    two matched leaves of one module (they would share its name), an out_axes n that leaves no
    in_shape, two out_axes patterns giving one kernel different n, or a bias of another shape.
    """
    flat = flatten(params)
    if targets is None:
        raise ValueError("targets is None: give patterns of the kernels to adapt (() for none)")
    paths = select(flat, targets, exclude=exclude)
    if as_patterns(targets) and not paths:
        raise ValueError(
            f"exclude {exclude!r} leaves none of the kernels targets {targets!r} match"
        )
    _check_keys(params)
    check_patterns(stacked, list(flat), what="stacked")
    n_out = _out_axes(out_axes, paths)
    layers = [
        _layer(path, flat, n_stack=1 if matches(path, stacked) else 0, n_out=n_out.get(path))
        for path in paths
    ]
    names: dict[str, str] = {}
    for layer in layers:
        if (other := names.setdefault(layer.name, layer.kernel_path)) != layer.kernel_path:
            raise ValueError(
                f"targets match two leaves of module {layer.name!r}, {other!r} and "
                f"{layer.kernel_path!r}: an adapter keys its tensors by module, so target one "
                "kernel per module"
            )
    return layers


def check_tensor_paths(tensors: Mapping[str, Iterable[str]], *, what: str) -> None:
    """ValueError where an adapter keeping each layer's tensors at ``{layer}/{key}``
    (``tensors``: {layer name: keys}) would put one at the path of, or above, a targeted layer:
    the two would collide in its params tree."""
    below: dict[str, str] = {}  # each layer's path and every path above it -> that layer
    for name in tensors:
        parts = name.split("/")
        for i in range(1, len(parts) + 1):
            below.setdefault("/".join(parts[:i]), name)
    for name, keys in tensors.items():
        for key in keys:
            if (clash := below.get(child(name, key))) is not None:
                raise ValueError(
                    f"{what} keeps {name}'s tensors at {child(name, key)!r}, the path of "
                    f"targeted module {clash!r}: exclude one of the two"
                )


def _out_axes(out_axes: Mapping[str, int] | None, paths: list[str]) -> dict[str, int]:
    """{kernel path: n} from ``out_axes``' patterns, checked against the targeted ``paths``."""
    out_axes = dict(out_axes or {})
    check_patterns(tuple(out_axes), paths, what="out_axes")
    found: dict[str, int] = {}
    for pattern, n in out_axes.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"out_axes[{pattern!r}] must be an int >= 1, got {n!r}")
        for path in paths:
            if matches(path, pattern) and found.setdefault(path, n) != n:
                raise ValueError(
                    f"out_axes patterns give {path!r} both {found[path]} and {n} output axes"
                )
    return found


def _check_keys(tree: Params, prefix: str = "") -> None:
    """ValueError for a key holding '/', which paths use as separator (a flattened tree, such as
    merged.npz's keys, must be unflattened first: ``peft_core.unflatten``)."""
    for key, value in tree.items():
        if isinstance(key, str) and "/" in key:
            raise ValueError(
                f"param key {prefix + key!r} holds '/', the path separator: pass the nested tree "
                "(peft_core.unflatten of a flat {'a/b/kernel': array} dict)"
            )
        if isinstance(value, Mapping):
            _check_keys(value, f"{prefix}{key}/")


def _layer(path: str, flat: Mapping[str, Any], n_stack: int, n_out: int | None) -> Layer:
    if not hasattr(flat[path], "shape"):
        raise ValueError(
            f"target {path!r} is a Python {type(flat[path]).__name__}, not an array: adapters "
            "train kernels; did the pattern match a non-array leaf?"
        )
    shape = tuple(flat[path].shape)
    if not trainable_float(flat[path].dtype):
        raise ValueError(
            f"target {path!r} is {flat[path].dtype}: adapters train float kernels of 16 bits or "
            "more (an update would be rounded away); cast or dequantize it to bfloat16 or float32, "
            "or exclude it"
        )
    stack, rest = shape[:n_stack], shape[n_stack:]
    if len(rest) < 2:
        raise ValueError(
            f"target {path!r} has shape {shape}: adapters need a kernel of at least 2 dims "
            "(after the stacked-layer axis); did the pattern match a bias or a norm scale?"
        )
    if n_out is not None and n_out >= len(rest):
        raise ValueError(
            f"out_axes gives {path!r} {n_out} output axes of its {len(rest)} "
            f"(shape {shape}{', after the stacked-layer axis' if n_stack else ''}): none is left "
            "for in_shape"
        )
    module = path.rpartition("/")[0]
    bias_path = child(module, "bias")
    if bias_path not in flat:
        qkv = len(rest) == 3 and module.rpartition("/")[2] in ATTENTION_QKV
        n = n_out or (2 if qkv else 1)
        return Layer(path, None, stack, rest[:-n], rest[-n:])
    bias_shape = tuple(flat[bias_path].shape)
    if bias_shape[:n_stack] != stack:
        raise ValueError(f"bias {bias_path!r} {bias_shape} does not share the stack axis {stack}")
    out = bias_shape[n_stack:]
    if n_out is not None and n_out != len(out):
        raise ValueError(
            f"out_axes gives {path!r} {shape} {n_out} output axes, its bias {bias_path!r} has "
            f"{len(out)} {out}: drop the out_axes pattern, the bias says it"
        )
    if not out or len(out) >= len(rest) or rest[-len(out) :] != out:
        raise ValueError(
            f"kernel {path!r} {shape} does not end with its bias shape {bias_shape[n_stack:]}"
            + ("" if n_stack else " (a stack of layers, e.g. nn.scan's? name it in stacked=)")
            + " (a transposed conv's transpose_kernel=True kernel (kh, kw, out, in) is not read)"
        )
    if not n_stack and n_out is None and len(out) >= 2 and shape[0] == out[0]:
        raise ValueError(
            f"kernel {path!r} {shape} with bias {bias_shape} reads two ways: one layer "
            f"{rest[: -len(out)]} -> {out}, or a stack of {shape[0]} layers "
            f"{shape[1 : len(shape) - len(out) + 1]}"
            f" -> {out[1:]} (nn.scan's): name it in stacked= if it is a stack, else confirm the "
            f"one layer with out_axes={{pattern: {len(out)}}}"
        )
    return Layer(path, bias_path, stack, rest[: -len(out)], out)
