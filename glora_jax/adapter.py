"""GLoRA (Chavan et al. 2023) as an Adapter: init / apply / merge / space over Flax param trees.

    adapter = glora((8, 4))
    aparams = adapter.init(rng, params)           # mirrors params: .../layer/{a_in, ...}
    space   = adapter.space(params)               # GLoRASpace
    cfg     = space.sample(rng)                   # {layer: int32 (*stack, 5)}
    eff     = adapter.apply(params, aparams, cfg) # W0 + W0 ⊙ A + B, b0 + b0 ⊙ D + E + C W0

A GLoRA layer is one targeted kernel, or several sibling kernels fused along fan_out by ``fuse``
(ViT's query/key/value -> one qkv layer of fan_out 3·D, as torch's fused qkv Linear and the
paper's parameter counts have it; its members in path order, key, query, value, where torch's
are q, k, v: the same options up to a permutation of output channels, except that a scalar
option shares the first channel's weight, key's here and query's there). ``merge`` is
``apply`` in f32 (``apply`` may compute in ``update_dtype``): both compute W_uni and b_uni from
the original W0; ``merge`` returns plain arrays in the params' dtypes.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from glora_jax.space import Config, GLoRASpace, LayerSpec, check_ranks
from glora_jax.support import glora_delta, init_supports, static_none, support_shapes
from peft_core.adapter import (
    Adapter,
    AParams,
    add_delta,
    check_float_dtype,
    check_tree,
    group_by,
    over_layers,
    replace_leaves,
)
from peft_core.layers import Layer, check_tensor_paths, find_layers
from peft_core.paths import Params, Patterns, flatten, get_leaf, unflatten
from peft_core.targets import DENSE_TARGETS

#: (kernel-path regex, layer-name template): matching kernels that expand to the same name fuse.
FusePatterns = Sequence[tuple[str, str]]

#: big_vision ViT: .../MultiHeadDotProductAttention_0/{query,key,value}/kernel -> .../qkv.
QKV_FUSE: FusePatterns = (
    (r"(.*/MultiHeadDotProductAttention_\d+)/(query|key|value)/kernel", r"\1/qkv"),
)


@dataclasses.dataclass(frozen=True)
class GLoRALayer:
    """One GLoRA layer: kernels (ordered by path) sharing stack, in_shape and bias presence.

    Its matrix view is the members' matrix views concatenated along fan_out.
    """

    name: str
    members: tuple[Layer, ...]

    @property
    def stack_shape(self) -> tuple[int, ...]:
        return self.members[0].stack_shape

    @property
    def has_bias(self) -> bool:
        return self.members[0].bias_path is not None

    @property
    def spec(self) -> LayerSpec:
        fan_out = sum(m.fan_out for m in self.members)
        return LayerSpec(
            self.name, self.stack_shape, self.members[0].fan_in, fan_out, self.has_bias
        )


def glora_layers(
    params: Params,
    *,
    targets: Patterns,
    exclude: Patterns | None,
    stacked: Patterns | None,
    fuse: FusePatterns | None,
    out_axes: Mapping[str, int] | None,
) -> list[GLoRALayer]:
    """Targeted kernels grouped into GLoRA layers, sorted by name with numbers compared as numbers
    (block 2 before block 10), so the order does not depend on the params' dict order.

    A kernel whose path fully matches a ``fuse`` regex joins the layer named by expanding the
    template (``re.Match.expand``); a group of one keeps the kernel's own name. A fuse pattern
    matching no target is not an error (QKV_FUSE is the default for every model).
    """
    if targets is None:
        raise ValueError("GLoRA targets is None: give patterns of the kernels to adapt")
    found = find_layers(params, targets, exclude=exclude, stacked=stacked, out_axes=out_axes)
    if not found:
        raise ValueError(f"GLoRA targets {targets!r} select no layers: a supernet needs one")
    groups: dict[str, list[Layer]] = {}
    for layer in found:
        groups.setdefault(_fused_name(layer.kernel_path, fuse), []).append(layer)
    out = []
    for name, members in groups.items():
        members.sort(key=lambda m: m.kernel_path)
        out.append(GLoRALayer(name if len(members) > 1 else members[0].name, tuple(members)))
        _check_fusable(out[-1])
    return sorted(out, key=lambda layer: _natural_key(layer.name))


def _natural_key(name: str) -> list[Any]:
    """'block_10' -> ['block_', 10, '']: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _fused_name(kernel_path: str, fuse: FusePatterns | None) -> str:
    for pattern, template in fuse or ():
        try:
            match = re.fullmatch(pattern, kernel_path)
        except re.error as e:
            raise ValueError(f"invalid fuse pattern {pattern!r}: {e}") from e
        if match:
            try:
                return match.expand(template)
            except (re.error, IndexError) as e:
                raise ValueError(
                    f"invalid fuse template {template!r} for pattern {pattern!r}: {e}"
                ) from e
    return kernel_path


def _fuse_pairs(fuse: FusePatterns | None) -> tuple[tuple[str, str], ...] | None:
    """``fuse`` as a tuple of (regex, template) string pairs (it is read once per kernel);
    TypeError for anything else, such as one pair without the tuple around it."""
    if fuse is None:
        return None
    many = isinstance(fuse, Iterable) and not isinstance(fuse, str | bytes | Mapping)
    pairs = tuple(fuse) if many else None
    if pairs is None or not all(
        isinstance(p, tuple | list) and len(p) == 2 and all(isinstance(x, str) for x in p)
        for p in pairs
    ):
        raise TypeError(
            f"fuse must be a sequence of (kernel regex, layer-name template) string pairs, such "
            f"as QKV_FUSE = {QKV_FUSE!r}, or None; got {fuse!r}"
        )
    return tuple((pattern, template) for pattern, template in pairs)


def _check_fusable(layer: GLoRALayer) -> None:
    first = layer.members[0]
    parents = sorted({m.name.rpartition("/")[0] for m in layer.members})
    if len(parents) > 1:
        raise ValueError(
            f"fuse template made GLoRA layer {layer.name!r} of kernels in modules {parents}: "
            "fused kernels must be siblings in one module (keep the path in the template, "
            r"e.g. (r'(.*)/(query|key|value)/kernel', r'\1/qkv'))"
        )
    for m in layer.members[1:]:
        same = (m.stack_shape, m.in_shape, m.bias_path is None) == (
            first.stack_shape,
            first.in_shape,
            first.bias_path is None,
        )
        if not same:
            raise ValueError(
                f"cannot fuse {first.kernel_path} {first.kernel_shape} "
                f"(bias: {first.bias_path is not None}) with {m.kernel_path} {m.kernel_shape} "
                f"(bias: {m.bias_path is not None}) into GLoRA layer {layer.name!r}: fused "
                "kernels must share stack axes, in_shape and bias presence (set fuse=None?)"
            )


def glora(
    ranks: int | Sequence[int] = (8, 4),
    *,
    targets: Patterns = DENSE_TARGETS,
    exclude: Patterns | None = None,
    stacked: Patterns | None = None,
    fuse: FusePatterns | None = QKV_FUSE,
    out_axes: Mapping[str, int] | None = None,
    dtype: Any = jnp.float32,
    update_dtype: Any = None,
) -> Adapter:
    """GLoRA on every kernel matched by ``targets`` with lora options of the given ``ranks``
    (an int: one rank).

    ``exclude``: patterns of kernels that ``targets`` matches but that stay frozen.
    ``stacked``: patterns of kernels with a leading nn.scan axis (one config row and one set of
    support tensors per slice). ``fuse``: (regex, template) pairs fusing sibling kernels into one
    layer (default: ViT q/k/v); None fuses nothing. ``out_axes``: {kernel regex: n}, the last n
    kernel axes are fan_out (``peft_core.layers.find_layers``). ``dtype``: the support tensors'
    dtype.
    ``update_dtype``: what ``apply`` computes W0 + W0 ⊙ A + B and b0 + b0 ⊙ D + E + C W0 in (so
    also their gradients) and returns the updated kernels and biases in; None: computed in f32
    at least, returned in each param's dtype. A model that computes in bf16 rounds the effective
    weights to bf16 anyway, and ``jnp.bfloat16`` here halves the bytes of the weight-sized
    passes (the supernet with 4 subnets per step: +2-5% img/s on an H200). ``merge`` always
    computes in f32 at least and returns each param's dtype.

    A cfg holds option indices of one space (``space.decode`` names them): a cfg of another
    space (other ranks) reads as other options. ``apply`` checks a concrete cfg's layers, shapes
    and indices; under ``jax.jit`` only layers, dtype and shapes (an out-of-range index, negative
    too, reads as none).
    """
    rank_tuple: tuple[int, ...]
    if isinstance(ranks, Iterable) and not isinstance(ranks, str):
        rank_tuple = tuple(ranks)
    else:  # an int, or a wrong type that check_ranks names
        rank_tuple = (ranks,)  # type: ignore[assignment]
    check_ranks(rank_tuple)
    rank_tuple = tuple(map(int, rank_tuple))  # numpy ints too: the space's repr is its identity
    fuse = _fuse_pairs(fuse)
    check_float_dtype(dtype, what="GLoRA dtype")
    if update_dtype is not None:
        check_float_dtype(update_dtype, what="GLoRA update_dtype")
    find = functools.partial(
        glora_layers,
        targets=targets,
        exclude=exclude,
        stacked=stacked,
        fuse=fuse,
        out_axes=out_axes,
    )

    def space(params: Params) -> GLoRASpace:
        return space_of(find(params))

    def space_of(layers: Sequence[GLoRALayer]) -> GLoRASpace:
        return GLoRASpace(rank_tuple, tuple(layer.spec for layer in layers))

    def shapes(the_space: GLoRASpace) -> dict[str, dict[str, tuple[int, ...]]]:
        out = {
            s.name: support_shapes(
                stack_shape=s.stack_shape,
                fan_in=s.fan_in,
                fan_out=s.fan_out,
                rmax=max(rank_tuple),
                has_bias=s.has_bias,
            )
            for s in the_space.specs
        }
        check_tensor_paths(out, what="GLoRA")
        return out

    def init(rng: jax.Array, params: Params) -> AParams:
        layers = shapes(space(params))
        supports = init_supports(rng, list(layers.values()), dtype=dtype)
        return unflatten(
            {
                f"{name}/{k}": v
                for name, sup in zip(layers, supports, strict=True)
                for k, v in sup.items()
            }
        )

    def updated(
        params: Params, aparams: AParams, cfg: Config | None = None, *, compute: Any = None
    ) -> Params:
        if cfg is None:
            raise ValueError("GLoRA needs a cfg: space.sample(rng), space.fixed(...) or encode")
        layers = find(params)
        the_space = space_of(layers)
        if the_space.check(cfg):
            raise ValueError(
                "adapter.apply takes the cfg of one subnet; for a batch of cfgs use "
                "jax.vmap(lambda c: adapter.apply(params, aparams, c))(cfgs)"
            )
        expected = shapes(the_space)
        check_tree(
            {
                n: {k: jax.ShapeDtypeStruct(v, dtype) for k, v in e.items()}
                for n, e in expected.items()
            },
            aparams,
            what="GLoRA params",
        )
        flat = flatten(aparams)  # layer names hold '/': nested and '/'-keyed trees both work
        delta: Callable[..., Any] = functools.partial(
            glora_delta, options=the_space.options, dtype=compute
        )
        updates: dict[str, jax.Array] = {}

        key = functools.partial(batch_key, cfg=cfg, options=the_space.options)
        for group in group_by(layers, key):
            skip = key(group[0])[0]
            deltas = over_layers(
                functools.partial(delta, skip=skip),
                [
                    (
                        _fused_kernel(params, layer),
                        _fused_bias(params, layer),
                        {k: flat[f"{layer.name}/{k}"] for k in expected[layer.name]},
                        jnp.asarray(cfg[layer.name]),
                    )
                    for layer in group
                ],
                [len(layer.stack_shape) for layer in group],
            )
            for layer, (dw, db) in zip(group, deltas, strict=True):
                updates |= _unfused(params, layer.members, dw, db, compute)
        return replace_leaves(params, updates)

    def apply(params: Params, aparams: AParams, cfg: Config | None = None) -> Params:
        """params with each targeted kernel W0 + W0⊙A + B and bias b0 + b0⊙D + E + W0ᵀC, formed
        and returned in ``update_dtype`` (None: formed in f32 at least, in each param's dtype)."""
        return updated(params, aparams, cfg, compute=update_dtype)

    def merge(params: Params, aparams: AParams, cfg: Config | None = None) -> Params:
        """``apply``'s params with the update formed in f32 at least, in each param's dtype."""
        return updated(params, aparams, cfg)

    return Adapter(init, apply, merge, space)


def batch_key(
    layer: GLoRALayer, *, cfg: Config, options: Mapping[str, tuple[str, ...]]
) -> tuple[Any, ...]:
    """(statically skipped tensors, stack axes, fan_in, fan_out, bias?): layers with equal keys
    are updated in one batched call (``over_layers``), e.g. the 12 qkv layers of a ViT-B."""
    skip = static_none(cfg[layer.name], options)
    return (skip, layer.stack_shape, layer.spec.fan_in, layer.spec.fan_out, layer.has_bias)


def _fused_kernel(params: Params, layer: GLoRALayer) -> jax.Array:
    """W0 of the layer: members' matrix views concatenated, (*stack, fan_in, fan_out)."""
    return jnp.concatenate(
        [
            get_leaf(params, m.kernel_path).reshape(*m.stack_shape, m.fan_in, m.fan_out)
            for m in layer.members
        ],
        axis=-1,
    )


def _fused_bias(params: Params, layer: GLoRALayer) -> jax.Array | None:
    """b0 of the layer: members' flattened biases concatenated, (*stack, fan_out); or None."""
    if not layer.has_bias:
        return None
    return jnp.concatenate(
        [
            get_leaf(params, str(m.bias_path)).reshape(*m.stack_shape, m.fan_out)
            for m in layer.members
        ],
        axis=-1,
    )


def _unfused(
    params: Params,
    members: Sequence[Layer],
    dw: jax.Array | None,
    db: jax.Array | None,
    compute: Any,
) -> dict[str, jax.Array]:
    """Updated member leaves: W0 + ΔW and b0 + Δb (added in ``compute``, see ``add_delta``) split
    back along fan_out and reshaped. A None update (statically none) leaves those leaves the
    params' own arrays, cast to ``compute`` when given: a subnet's leaves get one dtype whether
    its cfg is concrete or traced."""
    ends = list(itertools.accumulate(m.fan_out for m in members))[:-1]
    kernels = [m.kernel_path for m in members]
    biases = [str(m.bias_path) for m in members if m.bias_path is not None]
    out = {}
    for update, paths in ((dw, kernels), (db, biases)):
        if update is not None:
            for path, part in zip(paths, jnp.split(update, ends, axis=-1), strict=True):
                leaf = get_leaf(params, path)
                out[path] = add_delta(leaf, part.reshape(leaf.shape), compute)
        elif compute is not None:
            out |= {path: get_leaf(params, path).astype(compute) for path in paths}
    return out
