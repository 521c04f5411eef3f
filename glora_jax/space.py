"""The GLoRA search space: which option each support tensor of each layer takes, as int arrays.

A config (``cfg``) is ``{layer_name: int32 array (*batch, *stack_shape, 5)}``; column t holds the
option index of tensor "ABCDE"[t] into ``space.options[t]``. Being data, one compiled step serves
every subnet and ``jax.vmap`` runs several. The readable form, for people and JSON, is
``{slice_name: {"A": "lora_8", "B": "vector", "C": "none", "D": "scalar", "E": "vector"}}`` with
``slice_name`` the layer name, or ``f"{name}[{i}]"`` for slice i of a stacked (nn.scan) layer
(``f"{name}[{i},{j}]"`` for two stack axes).

For the evolutionary search the same config is a gene matrix (G, 5) in numpy: one row per layer
slice, in ``slice_names`` order, and ``mutate`` / ``crossover`` act on its entries as the
reference does (each (slice, tensor) entry independently).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from glora_jax.support import BIAS_TENSORS, NONE, TENSORS, option_rank, tensor_options
from peft_core.adapter import positive_int

Config = dict[str, Any]
Readable = dict[str, dict[str, str]]


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """What the space needs to know of one GLoRA layer (a kernel or a fused group)."""

    name: str
    stack_shape: tuple[int, ...]
    fan_in: int
    fan_out: int
    has_bias: bool

    @property
    def num_slices(self) -> int:
        return math.prod(self.stack_shape)

    def slice_names(self) -> list[str]:
        """``name`` unstacked, else ``name[i]`` / ``name[i,j]`` in row-major order."""
        if not self.stack_shape:
            return [self.name]
        return [
            f"{self.name}[{','.join(map(str, i))}]"
            for i in itertools.product(*map(range, self.stack_shape))
        ]


@dataclasses.dataclass(frozen=True, eq=False)
class GLoRASpace:
    """Options per layer and tensor, their legality (no bias -> C, D, E 'none') and cost."""

    ranks: tuple[int, ...]
    specs: tuple[LayerSpec, ...]

    def __post_init__(self) -> None:
        check_ranks(self.ranks)
        names = [s.name for s in self.specs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"GLoRA layer names must be unique, repeated: {dup}")
        for s in self.specs:
            if max(self.ranks) > min(s.fan_in, s.fan_out):
                raise ValueError(
                    f"GLoRA rank {max(self.ranks)} exceeds min(fan_in, fan_out) = "
                    f"{min(s.fan_in, s.fan_out)} of layer {s.name!r} "
                    f"(fan_in {s.fan_in}, fan_out {s.fan_out})"
                )
        if self.max_params > np.iinfo(np.int32).max:  # num_params' int32 would wrap around
            raise ValueError(
                f"GLoRA space's largest subnet trains {self.max_params:,} parameters, more than "
                f"the int32 counts of num_params hold ({np.iinfo(np.int32).max:,}): adapt fewer "
                "layers or take lower ranks"
            )

    # ---- structure --------------------------------------------------------------------------

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)

    @functools.cached_property
    def options(self) -> dict[str, tuple[str, ...]]:
        """Global option names per tensor; a cfg holds indices into these."""
        return tensor_options(self.ranks)

    @functools.cached_property
    def legal_mask(self) -> dict[str, np.ndarray]:
        """{layer: bool (5, n_options)}: entry [t, k] is True when option k of "ABCDE"[t] is legal.

        ``n_options`` is the longest option list (A's); shorter lists are padded with False.
        """
        return {s.name: self._mask(s.has_bias) for s in self.specs}

    def legal(self, layer: str) -> dict[str, tuple[str, ...]]:
        """Legal option names per tensor of ``layer``."""
        mask = self.legal_mask[self._spec(layer).name]
        return {
            t: tuple(o for k, o in enumerate(self.options[t]) if mask[i, k])
            for i, t in enumerate(TENSORS)
        }

    @property
    def slice_names(self) -> tuple[str, ...]:
        """Readable keys, one per layer slice; also the row labels of a gene matrix."""
        return tuple(n for s in self.specs for n in s.slice_names())

    @property
    def num_genes(self) -> int:
        return sum(s.num_slices for s in self.specs)

    # ---- configs as arrays (jit / vmap friendly) --------------------------------------------

    def sample(self, rng: jax.Array, batch_shape: int | Sequence[int] = ()) -> Config:
        """A random cfg: every slice and tensor uniform over its legal options (the reference).

        Leaves are int32 (*batch_shape, *stack_shape, 5) (an int n: (n, ...)). One jitted
        draw (eagerly, its ops would compile one by one) that takes the option tables as
        arguments: compiled once per batch shape and layer layout, for every space of those
        (the trainer's, the search's and its checks' spaces of one model); works under jit.
        """
        if isinstance(batch_shape, int | np.integer):
            batch_shape = (int(batch_shape),)
        shape = tuple(int(n) for n in batch_shape)
        legal_idx, n_legal = self._gene_tables
        return _draw(legal_idx, n_legal, rng, batch_shape=shape, layout=self._layout)

    def num_params(self, cfg: Config) -> Any:
        """Trainable scalars of the subnet(s) in ``cfg``, int32 with the cfg's batch shape: a
        numpy array for a cfg of numpy arrays (the search's genes), else a jax one.

        Per layer slice: lora_r r·(fan_in + fan_out) for A/B, r·fan_in + r for C; vector
        fan_out for A/B/D/E, fan_in for C; scalar 1; none 0. A concrete cfg is checked (an index
        out of range is a ValueError); under jit an index out of range, negative too, counts 0,
        as ``apply`` reads it as none. A gather and a sum: jit/vmap-able.
        """
        on_device = any(isinstance(x, jax.Array) for x in jax.tree.leaves(cfg))
        xp: Any = jnp if on_device else np
        genes = self._join_genes(cfg, xp)
        inside = (genes >= 0) & (genes < self._gene_costs.shape[-1])
        costs = _per_gene(xp.asarray(self._gene_costs, np.int32), xp.where(inside, genes, 0))
        return xp.where(inside, costs, 0).sum((-2, -1)).astype(np.int32)

    @functools.cached_property
    def max_params(self) -> int:
        """Parameter count of the largest subnet (every tensor at its costliest legal option)."""
        return int(self._gene_costs.max(-1).sum())

    def check(self, cfg: Config) -> tuple[int, ...]:
        """Raise ValueError unless ``cfg`` fits the space; return its batch shape.

        Checks layer keys, integer dtype, trailing (*stack_shape, 5) shapes and one batch shape
        for all layers; for concrete (non-traced) arrays also that every option is legal.
        """
        if not isinstance(cfg, Mapping):
            raise ValueError(f"GLoRA cfg must be a dict {{layer: int array}}, got {type(cfg)}")
        _check_keys(set(cfg), set(self.layers), what="GLoRA cfg layers")
        batch = self._batch_shape(cfg)
        try:
            genes = self._rows(cfg, batch, np)
        except jax.errors.TracerArrayConversionError:
            return batch  # traced (jit / vmap): values are checked where they are concrete
        self._check_genes(genes)
        return batch

    def _batch_shape(self, cfg: Mapping[str, Any]) -> tuple[int, ...]:
        """The batch shape shared by all layers of ``cfg``, checking dtypes and shapes."""
        batches = {}
        for spec in self.specs:
            leaf = cfg[spec.name]
            tail = (*spec.stack_shape, len(TENSORS))
            shape = tuple(getattr(leaf, "shape", ()))
            dtype = getattr(leaf, "dtype", None)
            if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
                raise ValueError(f"GLoRA cfg[{spec.name!r}] must be an int array, got {leaf!r}")
            if shape[len(shape) - len(tail) :] != tail:
                raise ValueError(
                    f"GLoRA cfg[{spec.name!r}] has shape {shape}; expected (*batch, *{tail})"
                )
            batches[spec.name] = shape[: len(shape) - len(tail)]
        if len(set(batches.values())) > 1:
            raise ValueError(f"GLoRA cfg layers disagree on the batch shape: {batches}")
        return next(iter(batches.values()), ())

    # ---- readable configs (host side) --------------------------------------------------------

    def encode(self, readable: Mapping[str, Mapping[str, str]]) -> Config:
        """{slice_name: {"A": option, ..., "E": option}} -> cfg (numpy int32, no batch axes)."""
        _check_keys(set(readable), set(self.slice_names), what="GLoRA readable cfg slices")
        rows = iter(
            self._encode_choice(spec, readable[name], where=name)
            for spec in self.specs
            for name in spec.slice_names()
        )
        return {
            s.name: np.stack([next(rows) for _ in range(s.num_slices)]).reshape(
                *s.stack_shape, len(TENSORS)
            )
            for s in self.specs
        }

    def decode(self, cfg: Config) -> Readable:
        """cfg of ONE subnet (no batch axes) -> {slice_name: {"A": option, ...}}."""
        genes = self.to_genes(cfg)
        if genes.ndim != 2:
            raise ValueError(f"decode takes one cfg, got batch shape {genes.shape[:-2]}")
        return {
            name: {t: self.options[t][k] for t, k in zip(TENSORS, row, strict=True)}
            for name, row in zip(self.slice_names, genes, strict=True)
        }

    def fixed(self, choice: Mapping[str, str], *, fallback_none: bool = False) -> Config:
        """The same ``choice`` {"A": option, ..., "E": option} on every layer slice.

        An option illegal on some layer (C, D, E other than 'none' on a layer without a bias)
        raises, unless ``fallback_none``: then that tensor is 'none' on that layer.
        """
        out = {}
        for spec in self.specs:
            # a choice that is no dict reaches _encode_choice as it is, which names it
            fill = fallback_none and isinstance(choice, Mapping)
            layer_choice = self._fallback_none(spec, choice) if fill else choice
            row = self._encode_choice(spec, layer_choice, where=spec.name)
            out[spec.name] = np.broadcast_to(row, (*spec.stack_shape, len(TENSORS))).copy()
        return out

    # ---- genes for the evolutionary search (numpy, host side) --------------------------------

    def to_genes(self, cfg: Config) -> np.ndarray:
        """cfg -> int32 (*batch, G, 5), rows in ``slice_names`` order."""
        return self._join_genes(cfg, np).astype(np.int32)

    def from_genes(self, genes: np.ndarray) -> Config:
        """int (*batch, G, 5) -> cfg (numpy int32); raises on a wrong shape or illegal option."""
        return self._split_genes(self._check_genes(genes))

    def mutate(self, rng: np.random.Generator, genes: np.ndarray, prob: float) -> np.ndarray:
        """Each (slice, tensor) entry resampled uniformly over its legal options with p ``prob``.

        (As in the reference, a resampled entry may draw its current option again.)
        """
        genes = self._check_genes(genes)
        legal_idx, n_legal = self._gene_tables
        drawn = _per_gene(legal_idx, np.floor(rng.random(genes.shape) * n_legal).astype(int))
        return np.where(rng.random(genes.shape) < prob, drawn, genes).astype(np.int32)

    def crossover(
        self, rng: np.random.Generator, genes_a: np.ndarray, genes_b: np.ndarray
    ) -> np.ndarray:
        """Each (slice, tensor) entry from parent a or b with probability 0.5."""
        a, b = self._check_genes(genes_a), self._check_genes(genes_b)
        if a.shape != b.shape:
            raise ValueError(f"crossover parents differ in shape: {a.shape} vs {b.shape}")
        return np.where(rng.random(a.shape) < 0.5, a, b).astype(np.int32)

    # ---- internals ---------------------------------------------------------------------------

    @functools.cached_property
    def _layout(self) -> _Layout:
        return tuple((s.name, s.stack_shape) for s in self.specs)

    def _join_genes(self, cfg: Config, xp: Any) -> Any:
        """cfg -> (*batch, G, 5) with ``xp`` = np or jnp, after ``check``."""
        return self._rows(cfg, self.check(cfg), xp)

    def _rows(self, cfg: Config, batch: tuple[int, ...], xp: Any) -> Any:
        rows = [
            xp.asarray(cfg[s.name]).reshape(*batch, s.num_slices, len(TENSORS)) for s in self.specs
        ]
        return xp.concatenate(rows, axis=-2)

    def _split_genes(self, genes: Any) -> Config:
        """(*batch, G, 5) -> cfg, the inverse of ``_join_genes`` (np or jnp arrays)."""
        return _split(genes, self._layout)

    def _spec(self, layer: str) -> LayerSpec:
        for s in self.specs:
            if s.name == layer:
                return s
        raise ValueError(f"no GLoRA layer {layer!r}; layers: {list(self.layers)}")

    def _mask(self, has_bias: bool) -> np.ndarray:
        width = max(len(o) for o in self.options.values())
        mask = np.zeros((len(TENSORS), width), bool)
        for i, t in enumerate(TENSORS):
            for k, o in enumerate(self.options[t]):
                mask[i, k] = has_bias or t not in BIAS_TENSORS or o == NONE
        return mask

    @functools.cached_property
    def _gene_legal(self) -> np.ndarray:
        """bool (G, 5, n_options): the legal mask of each gene row's layer."""
        return np.stack([self.legal_mask[s.name] for s in self.specs for _ in range(s.num_slices)])

    @functools.cached_property
    def _gene_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """Legal option indices first, in order, (G, 5, n_options); and their counts (G, 5)."""
        legal = self._gene_legal
        return np.argsort(~legal, axis=-1, kind="stable").astype(np.int32), legal.sum(-1)

    @functools.cached_property
    def _gene_costs(self) -> np.ndarray:
        """int64 (G, 5, n_options): parameters each option trains on each slice."""
        return np.stack([self._cost_table(s) for s in self.specs for _ in range(s.num_slices)])

    def _cost_table(self, spec: LayerSpec) -> np.ndarray:
        """int64 (5, n_options): parameters each option trains on one slice (illegal ones: 0)."""
        table = np.zeros((len(TENSORS), self._mask(True).shape[1]), np.int64)
        for i, t in enumerate(TENSORS):
            for k, o in enumerate(self.options[t]):
                table[i, k] = _option_cost(t, o, fan_in=spec.fan_in, fan_out=spec.fan_out)
        return np.where(self.legal_mask[spec.name], table, 0)

    def _fallback_none(self, spec: LayerSpec, choice: Mapping[str, str]) -> dict[str, str]:
        """``choice`` with its known options that are illegal on ``spec`` replaced by 'none'."""
        legal = self.legal(spec.name)
        return {
            t: NONE if o in self.options.get(t, ()) and o not in legal[t] else o
            for t, o in choice.items()
        }

    def _encode_choice(
        self, spec: LayerSpec, choice: Mapping[str, str], *, where: str
    ) -> np.ndarray:
        if not isinstance(choice, Mapping):
            raise ValueError(f"{where}: expected a dict {{'A': option, ...}}, got {choice!r}")
        _check_keys(set(choice), set(TENSORS), what=f"{where}: support tensors")
        row = np.zeros(len(TENSORS), np.int32)
        for i, t in enumerate(TENSORS):
            option = choice[t]
            if option not in self.options[t]:
                raise ValueError(f"{where}: {self._unknown(t, option)}")
            row[i] = self.options[t].index(option)
            if not self.legal_mask[spec.name][i, row[i]]:
                raise ValueError(f"{where}: {_illegal(t, option)}")
        return row

    def _unknown(self, tensor: str, option: Any) -> str:
        if isinstance(option, str) and option.startswith("lora_"):
            rank = option.removeprefix("lora_")
            return (
                f"{tensor}={option!r}: rank {rank} is not in the space's ranks {self.ranks}"
                if tensor in ("A", "B", "C")
                else f"{tensor}={option!r}: {tensor} has no lora option"
            )
        return f"unknown option {tensor}={option!r}; {tensor} takes {self.options[tensor]}"

    def _check_genes(self, genes: np.ndarray) -> np.ndarray:
        genes = np.asarray(genes)
        if genes.shape[-2:] != (self.num_genes, len(TENSORS)) or not np.issubdtype(
            genes.dtype, np.integer
        ):
            raise ValueError(
                f"genes must be an int array (*batch, {self.num_genes}, {len(TENSORS)}), "
                f"got {genes.dtype} {genes.shape}"
            )
        in_range = (genes >= 0) & (genes < self._gene_legal.shape[-1])
        legal = in_range & _per_gene(self._gene_legal, np.where(in_range, genes, 0))
        if not legal.all():
            *batch, row, col = np.argwhere(~legal)[0]
            t, k = TENSORS[col], int(genes[(*batch, row, col)])
            options = self.options[t]
            detail = (
                _illegal(t, options[k])
                if 0 <= k < len(options)
                else f"option index {k} out of range for {t} {options}"
            )
            raise ValueError(f"GLoRA cfg slice {self.slice_names[row]!r}: {detail}")
        return genes.astype(np.int32)


def check_ranks(ranks: Sequence[int]) -> None:
    """Ranks must be distinct positive ints."""
    if not ranks or not all(positive_int(r) for r in ranks):
        raise ValueError(f"GLoRA ranks must be a non-empty tuple of positive ints, got {ranks!r}")
    if len(set(ranks)) != len(ranks):
        raise ValueError(f"GLoRA ranks must be distinct, got {ranks!r}")


def _option_cost(tensor: str, option: str, *, fan_in: int, fan_out: int) -> int:
    """Trainable scalars of one option of one tensor on one layer slice (the reference count)."""
    if option == NONE:
        return 0
    if option == "scalar":
        return 1
    if option == "vector":
        return fan_in if tensor == "C" else fan_out
    r = option_rank(option)
    return r * fan_in + r if tensor == "C" else r * (fan_in + fan_out)


def _illegal(tensor: str, option: str) -> str:
    return (
        f"{tensor}={option!r} is illegal on a layer without a bias: C, D and E act on the bias "
        "(b0 ⊙ D + E + C W0) and could not be merged, so they must be 'none' there"
    )


def _check_keys(got: set[str], expected: set[str], *, what: str) -> None:
    missing, extra = sorted(expected - got), sorted(got - expected)
    if missing or extra:
        raise ValueError(f"{what} do not fit the space; missing: {missing}; unknown: {extra}")


#: Each layer's name and stack shape, in gene order: what ``_split`` needs of a space.
_Layout = tuple[tuple[str, tuple[int, ...]], ...]


def _split(genes: Any, layout: _Layout) -> Config:
    """(*batch, G, 5) -> {layer: (*batch, *stack_shape, 5)} (np or jnp arrays)."""
    batch = genes.shape[:-2]
    sizes = [math.prod(stack_shape) for _, stack_shape in layout]
    bounds = np.cumsum([0, *sizes])
    return {
        name: genes[..., lo:hi, :].reshape(*batch, *stack_shape, len(TENSORS))
        for (name, stack_shape), lo, hi in zip(layout, bounds[:-1], bounds[1:], strict=True)
    }


@functools.partial(jax.jit, static_argnames=("batch_shape", "layout"))
def _draw(
    legal_idx: jax.Array,
    n_legal: jax.Array,
    rng: jax.Array,
    *,
    batch_shape: tuple[int, ...],
    layout: _Layout,
) -> Config:
    """Uniform legal options: ``legal_idx`` (G, 5, n) at a draw below ``n_legal`` (G, 5)."""
    pick = jax.random.randint(rng, (*batch_shape, *n_legal.shape), 0, n_legal)
    return _split(_per_gene(legal_idx, pick), layout)


def _per_gene(table: Any, genes: Any) -> Any:
    """table (G, 5, n) gathered at option indices genes (*batch, G, 5) -> (*batch, G, 5)."""
    n_genes, n_tensors = table.shape[:2]
    return table[np.arange(n_genes)[:, None], np.arange(n_tensors), genes]
