"""The adapter protocol: a value holding pure functions over param pytrees (cf. optax).

    aparams = adapter.init(rng, params)            # only the adapter's own tensors
    eff     = adapter.apply(params, aparams, cfg)  # same tree as params, W0 + dW on targets
    merged  = adapter.merge(params, aparams, cfg)  # plain arrays in the params' dtypes, to serve

``train`` (optional): how the train step runs it instead (``peft_core.activation_grads``):
``train.apply`` and ``train.wrap_forward(forward)``, with the same gradients as ``apply``.

``cfg`` is ``None`` for adapters without a search space; GLoRA's is a pytree of int arrays, so one
compiled function serves every subnet. ``space(params)`` returns that search space; ``space`` is
None for adapters without one.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from peft_core.paths import Params, flatten, unflatten

AParams = Any
Config = Any
T = TypeVar("T")


class InitFn(Protocol):
    def __call__(self, rng: jax.Array, params: Params) -> AParams: ...


class ApplyFn(Protocol):
    def __call__(self, params: Params, aparams: AParams, cfg: Config = None) -> Params: ...


#: A model ``forward(params, images, *, train, rng) -> logits``.
ForwardFn = Callable[..., jax.Array]


class TrainView(NamedTuple):
    """How the train step runs an adapter: ``apply(params, aparams, cfg)`` -> params for
    ``wrap_forward(forward)``; gradients with respect to aparams equal those of the adapter's
    weight-space ``apply`` with ``forward`` (``peft_core.activation_grads``). Only together: a
    plain forward on ``apply``'s params gives the same outputs and no gradient to aparams (their
    factors beside the kernels reach the loss through ``wrap_forward``'s taps alone, and Flax
    ignores params no module reads), which nothing can detect."""

    apply: Callable[..., Params]
    wrap_forward: Callable[[ForwardFn], ForwardFn]


class Adapter(NamedTuple):
    """A PEFT method as pure functions; see the module docstring."""

    init: InitFn
    apply: ApplyFn
    merge: ApplyFn
    space: Callable[[Params], Any] | None = None
    train: TrainView | None = None


def param_count(tree: Any) -> int:
    """Number of scalars in a pytree of arrays (or ShapeDtypeStructs)."""
    return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(tree))


def check_tree(expected: Any, got: Any, *, what: str) -> None:
    """Raise ValueError naming missing, unexpected and mis-shaped leaves of ``got``, and those
    that are not floating where ``expected``'s are (int or bool tensors cannot be trained).

    ``expected`` may hold ShapeDtypeStructs (e.g. from ``jax.eval_shape(adapter.init, ...)``).
    """
    exp = _flat_shapes(expected)
    act = _flat_shapes(got)
    missing = sorted(set(exp) - set(act))
    extra = sorted(set(act) - set(exp))
    wrong = sorted(
        f"{k}: expected {exp[k]}, got {act[k]}" for k in exp.keys() & act.keys() if exp[k] != act[k]
    )
    exp_leaves, got_leaves = _flat_leaves(expected), _flat_leaves(got)
    not_float = sorted(
        f"{k}: {_dtype(got_leaves[k])}"
        for k in exp.keys() & act.keys()
        if jnp.issubdtype(_dtype(exp_leaves[k]), jnp.floating)
        and not jnp.issubdtype(_dtype(got_leaves[k]), jnp.floating)
    )
    if missing or extra or wrong or not_float:
        parts = [f"{what} does not fit the params"]
        labelled = (
            ("missing", missing), ("unexpected", extra), ("mis-shaped", wrong),
            ("not floating", not_float),
        )  # fmt: skip
        for label, items in labelled:
            if items:
                more = " ..." if len(items) > 10 else ""
                parts.append(f"{label}: " + ", ".join(items[:10]) + more)
        raise ValueError("; ".join(parts))


def _flat_leaves(tree: Any) -> dict[str, Any]:
    """{'a/b/0': leaf} for every leaf of any pytree (dicts, tuples, lists)."""
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return {"/".join(_key_name(k) for k in path): v for path, v in leaves}


def _dtype(leaf: Any) -> Any:
    """An array's (or ShapeDtypeStruct's) dtype; a Python number's as numpy sees it."""
    return leaf.dtype if hasattr(leaf, "dtype") else np.result_type(leaf)


def _flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """{'a/b/0': shape} for every leaf (Python numbers: ())."""
    return {k: tuple(np.shape(v)) for k, v in _flat_leaves(tree).items()}


def _key_name(key: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def replace_leaves(params: Params, updates: Mapping[str, jax.Array]) -> dict[str, Any]:
    """A copy of ``params`` with the leaves at the given '/'-paths replaced by same-shaped ones."""
    flat = flatten(params)
    unknown = [p for p in updates if p not in flat]
    if unknown:
        raise KeyError(f"no such param paths: {unknown}")
    reshaped = [
        f"{p}: {jnp.shape(flat[p])} -> {jnp.shape(v)}"
        for p, v in updates.items()
        if jnp.shape(v) != jnp.shape(flat[p])
    ]
    if reshaped:
        raise ValueError(f"replacements must keep each leaf's shape: {reshaped}")
    flat.update(updates)
    return unflatten(flat)


def over_stack(fn: Callable[..., Any], n_stack: int) -> Callable[..., Any]:
    """``fn`` mapped over ``n_stack`` leading (nn.scan) axes of all its arguments."""
    for _ in range(n_stack):
        fn = jax.vmap(fn)
    return fn


def group_by(items: Sequence[T], key: Callable[[T], Hashable]) -> list[list[T]]:
    """``items`` split into lists of equal ``key``, in order of first appearance."""
    groups: dict[Hashable, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return list(groups.values())


def over_layers(
    fn: Callable[..., Any], args: Sequence[tuple[Any, ...]], n_stack: Sequence[int]
) -> list[Any]:
    """``fn(*args[i])`` for every layer i, as ONE batched call per group of layers whose
    arguments have equal structure, shapes and dtypes and equal ``n_stack[i]`` (stack axes).

    A group's arguments are stacked on a new leading axis and ``fn`` is vmapped over it and the
    stack axes: a few large kernels instead of one small set per layer (e.g. all 12 blocks' qkv
    at once). ``None`` arguments stay None. Returns the outputs in the order of ``args``.

    The batched outputs are cut into layers by one ``split`` per leaf, whose gradient is one
    concatenate of the layers' cotangents; indexing layer by layer (``x[j]``) would make it a
    zero-pad of each cotangent to the whole stack and a sum of the L padded arrays.
    """

    def signature(i: int) -> tuple[Any, ...]:
        leaves, structure = jax.tree.flatten(args[i])
        return (n_stack[i], structure, *((jnp.shape(x), jnp.result_type(x)) for x in leaves))

    out: list[Any] = [None] * len(args)
    for group in group_by(range(len(args)), signature):
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *(args[i] for i in group))
        batched = over_stack(fn, n_stack[group[0]] + 1)(*stacked)
        leaves, structure = jax.tree.flatten(batched)
        pieces = [jnp.split(x, len(group)) for x in leaves]  # per leaf: L arrays (1, ...)
        for j, i in enumerate(group):
            out[i] = jax.tree.unflatten(structure, [p[j][0] for p in pieces])
    return out


def add_delta(w: jax.Array, delta: jax.Array, dtype: Any = None) -> jax.Array:
    """``w + delta`` computed and returned in ``dtype``; None: computed in f32 at least and
    returned in ``w``'s dtype (a bf16 ``w`` keeps only the part of a small ``delta`` its 8-bit
    mantissa holds). ``delta`` must have ``w``'s shape (no broadcasting: a wrong-shaped update
    would change the param's shape)."""
    if jnp.shape(delta) != jnp.shape(w):
        raise ValueError(f"update of shape {jnp.shape(delta)} for a param of shape {w.shape}")
    out = w.dtype if dtype is None else dtype
    dtype = update_dtype(w.dtype, dtype)
    return (w.astype(dtype) + delta.astype(dtype)).astype(out)


def update_dtype(param_dtype: Any, dtype: Any = None) -> Any:
    """The dtype an update is computed in: ``dtype``, or when None ``param_dtype`` promoted to
    f32 at least."""
    return jnp.promote_types(param_dtype, jnp.float32) if dtype is None else jnp.dtype(dtype)


def delta_dtype(*dtypes: Any) -> Any:
    """The dtype a low-rank update is formed in from its factors: ``dtypes`` (the param's and
    the factors') promoted to f32 at least. Half-precision factors' product is then not rounded
    to their dtype before ``add_delta`` adds it to W0: W0 + ΔW is rounded once, to W0's dtype."""
    return functools.reduce(jnp.promote_types, dtypes, jnp.dtype(jnp.float32))


def trainable_float(dtype: Any) -> bool:
    """Whether a param of ``dtype`` can take an update: a float of 16 bits or more (an 8-bit
    float, like an int, would round a small update away)."""
    dtype = jnp.dtype(dtype)
    return bool(jnp.issubdtype(dtype, jnp.floating)) and dtype.itemsize >= 2


def check_float_dtype(dtype: Any, *, what: str) -> None:
    """ValueError unless ``dtype`` names a floating dtype of 16 bits or more (trainable tensors
    and updates: ``trainable_float``)."""
    try:
        ok = trainable_float(dtype)
    except TypeError as e:
        raise ValueError(f"{what} {dtype!r} is not a dtype: {e}") from e
    if not ok:
        raise ValueError(
            f"{what} must be a floating dtype of 16 bits or more, got {jnp.dtype(dtype)}"
        )


def positive_int(value: Any) -> bool:
    """Whether ``value`` is an int (Python or numpy, not a bool) >= 1: what a rank must be."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and bool(value >= 1)


def finite_nonzero(value: Any) -> bool:
    """Whether ``value`` is a real number (not a bool), finite and non-zero: a scale's rule."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return real and bool(value) and math.isfinite(value)


def no_config(name: str, cfg: Config) -> None:
    if cfg is not None:
        raise ValueError(f"{name} has no search space: cfg must be None, got {type(cfg).__name__}")


@dataclasses.dataclass(frozen=True, repr=False)
class CombinedSpace:
    """The search spaces of combined adapters (None where one has none); a config is the tuple
    of theirs, None for an adapter without a space. It is searchable
    (``glora_jax.evolution.SearchSpace``) when its spaces' genes have one width (GLoRA's: 5):
    its genes are theirs stacked in order, (*batch, G1 + G2 + ..., width); mutation and
    crossover act on each space's rows by its own rules. num_params is their sum plus
    ``fixed_params``, the scalars the adapters without a space train in every subnet."""

    spaces: tuple[Any, ...]
    fixed_params: int = 0

    def __post_init__(self) -> None:
        """ValueError where the largest subnet (``max_params``) is past int32: the summed int32
        counts would wrap around."""
        largest = self.max_params
        if largest > np.iinfo(np.int32).max:
            raise ValueError(
                f"the combined adapters' largest subnet trains {largest:,} parameters, more than "
                f"the int32 counts of num_params hold ({np.iinfo(np.int32).max:,}): adapt fewer "
                "layers or take lower ranks"
            )

    @property
    def max_params(self) -> int:
        """Parameter count of the largest subnet: the spaces' ``max_params`` (for those that
        state it; a nested CombinedSpace does) plus ``fixed_params``."""
        stated = (getattr(s, "max_params", 0) for s in self.spaces if s is not None)
        return int(sum(stated)) + self.fixed_params

    def __repr__(self) -> str:
        """Its spaces' reprs where they are dataclasses, else their class names: the same text
        in every process for the same spaces (what a search checkpoint's fingerprint hashes)."""
        names = (repr(s) if s is None or dataclasses.is_dataclass(s) else type(s).__qualname__
                 for s in self.spaces)  # fmt: skip
        return f"CombinedSpace(({', '.join(names)},), fixed_params={self.fixed_params})"

    def sample(self, rng: jax.Array, batch_shape: tuple[int, ...] = ()) -> tuple[Config, ...]:
        """One independent draw per space (None for adapters without one)."""
        keys = jax.random.split(rng, len(self.spaces))
        return tuple(
            None if s is None else s.sample(k, batch_shape)
            for s, k in zip(self.spaces, keys, strict=True)
        )

    def to_genes(self, cfg: tuple[Config, ...]) -> np.ndarray:
        """(*batch, G, width): each space's genes of its config, stacked in order."""
        return self._join(s.to_genes(c) for s, c in self._searched(self._configs(cfg)))

    def from_genes(self, genes: np.ndarray) -> tuple[Config, ...]:
        """The config tuple of ``genes``; each space checks its own rows."""
        return tuple(
            None if s is None else s.from_genes(part)
            for s, part in zip(self.spaces, self._split(genes), strict=True)
        )

    def mutate(self, rng: np.random.Generator, genes: np.ndarray, prob: float) -> np.ndarray:
        return self._join(
            s.mutate(rng, part, prob) for s, part in self._searched(self._split(genes))
        )

    def crossover(
        self, rng: np.random.Generator, genes_a: np.ndarray, genes_b: np.ndarray
    ) -> np.ndarray:
        parts = self._searched(self._split(genes_a), self._split(genes_b))
        return self._join(s.crossover(rng, a, b) for s, a, b in parts)

    def num_params(self, cfg: tuple[Config, ...]) -> Any:
        """Each space's count (with the configs' batch shape), summed, plus ``fixed_params``."""
        counts = [s.num_params(c) for s, c in self._searched(self._configs(cfg))]
        return sum(counts) + self.fixed_params

    def decode(self, cfg: tuple[Config, ...]) -> list[Any]:
        """Each space's readable config of one subnet (None for adapters without a space)."""
        return [
            None if s is None else s.decode(c)
            for s, c in zip(self.spaces, self._configs(cfg), strict=True)
        ]

    @functools.cached_property
    def _rows(self) -> tuple[int, ...]:
        """Gene rows per space (0 without one); ValueError for spaces of different widths."""
        rows, widths = [], set()
        for s in self.spaces:
            if s is None:
                rows.append(0)
                continue
            shape = np.shape(s.to_genes(s.sample(jax.random.key(0))))
            rows.append(shape[-2])
            widths.add(shape[-1])
        if not widths:
            raise ValueError("none of the combined adapters has a search space")
        if len(widths) > 1:
            raise ValueError(f"combined spaces have genes of different widths {sorted(widths)}")
        return tuple(rows)

    def _searched(self, *per_space: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        """(space, its item of each of ``per_space``) for the spaces that are not None."""
        for items in zip(self.spaces, *per_space, strict=True):
            if items[0] is not None:
                yield items

    def _configs(self, cfg: tuple[Config, ...]) -> tuple[Config, ...]:
        if not isinstance(cfg, tuple) or len(cfg) != len(self.spaces):
            raise ValueError(f"a combined cfg is a tuple of {len(self.spaces)} configs")
        return cfg

    def _split(self, genes: np.ndarray) -> list[np.ndarray]:
        genes = np.asarray(genes)
        bounds = np.cumsum([0, *self._rows])
        if genes.ndim < 2 or genes.shape[-2] != bounds[-1]:
            raise ValueError(
                f"combined genes have {bounds[-1]} rows ({', '.join(map(str, self._rows))} per "
                f"adapter), got shape {genes.shape}"
            )
        return [genes[..., lo:hi, :] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]

    @staticmethod
    def _join(parts: Iterable[np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(p) for p in parts], axis=-2)


def combine(*adapters: Adapter) -> Adapter:
    """Several adapters on disjoint targets as one; aparams and cfg are tuples, one per adapter.

    Applied in order, each to the previous one's output. Overlapping targets raise at init: a
    target is any leaf the adapter may rewrite under some config (found by tracing ``apply``
    with an abstract config, not by one draw); ``apply`` and ``merge`` raise for a leaf two
    adapters rewrite (aparams not made by this ``init``). Its train view applies each adapter's
    own (``Adapter.train``) where they share one forward wrapper, else it has none; the leaves a
    view adds (its factors beside the kernels) are kept from the adapters after it.
    """
    if not adapters:
        raise ValueError("combine() needs at least one adapter")
    for i, adapter in enumerate(adapters):
        if not isinstance(adapter, Adapter):
            raise TypeError(
                f"combine() takes Adapter values; argument {i} is a {type(adapter).__name__} "
                "(a factory such as peft_core.lora must be called: lora(8, ...))"
            )

    def cfgs(cfg: Config) -> tuple[Config, ...]:
        if cfg is None:
            return (None,) * len(adapters)
        if not isinstance(cfg, tuple) or len(cfg) != len(adapters):
            raise ValueError(f"combined cfg must be a tuple of {len(adapters)} configs or None")
        return cfg

    def init(rng: jax.Array, params: Params) -> tuple[AParams, ...]:
        rngs = jax.random.split(rng, len(adapters))
        out = tuple(a.init(r, params) for a, r in zip(adapters, rngs, strict=True))
        seen: dict[str, int] = {}
        for i, a in enumerate(adapters):
            changed = _changed_paths(params, a, out[i])
            for p in changed:
                if p in seen:
                    raise ValueError(f"adapters {seen[p]} and {i} both target {p!r}")
                seen[p] = i
        return out

    def fold(fn: Callable[[Adapter], ApplyFn]) -> ApplyFn:
        def run(params: Params, aparams: AParams, cfg: Config = None) -> Params:
            if not isinstance(aparams, tuple) or len(aparams) != len(adapters):
                raise ValueError(f"combined aparams must be a tuple of {len(adapters)} trees")
            out: Params = params
            added: dict[str, Any] = {}
            owner: dict[str, int] = {}  # each rewritten or added leaf's adapter
            for i, (a, ap, c) in enumerate(zip(adapters, aparams, cfgs(cfg), strict=True)):
                before, result = flatten(out), fn(a)(out, ap, c)
                new = flatten(result)
                for p, v in new.items():
                    if p in before and v is before[p]:
                        continue
                    if p in owner:
                        raise ValueError(
                            f"adapters {owner[p]} and {i} both target {p!r}: combine adapters "
                            "on disjoint targets (its init checks them)"
                        )
                    owner[p] = i
                kept = {p: v for p, v in new.items() if p in before}
                added |= {p: v for p, v in new.items() if p not in before}
                out = result if len(kept) == len(new) else unflatten(kept)
            return unflatten(flatten(out) | added) if added else out

        return run

    def space(params: Params) -> CombinedSpace:
        fixed = sum(
            param_count(jax.eval_shape(a.init, jax.random.key(0), params))
            for a in adapters
            if a.space is None
        )
        return CombinedSpace(tuple(a.space(params) if a.space else None for a in adapters), fixed)

    # The adapters' train views run under one forward wrapper when they share it (the same
    # grads); the others apply in weight space inside it. Views of several wrappers (grads
    # "auto" and "activation") would tap each layer twice: the combination then trains in
    # weight space (the same gradients, slower).
    wraps = {a.train.wrap_forward for a in adapters if a.train is not None}
    train = None
    if len(wraps) == 1:
        train = TrainView(fold(lambda a: (a.train or a).apply), wraps.pop())
    has_space = any(a.space is not None for a in adapters)
    return Adapter(
        init,
        fold(lambda a: a.apply),
        fold(lambda a: a.merge),
        space if has_space else None,
        train,
    )


def adapted_paths(adapter: Adapter, params: Params) -> list[str]:
    """The param paths ``adapter`` may rewrite on ``params``, found by tracing its ``init`` and
    ``apply`` with abstract values (nothing is computed)."""
    return _changed_paths(params, adapter, jax.eval_shape(adapter.init, jax.random.key(0), params))


def _changed_paths(params: Params, adapter: Adapter, aparams: AParams) -> list[str]:
    """Param paths the adapter may rewrite: leaves of its output, traced with an abstract
    config (so no option is decided by a draw), that are not its input's."""
    space = adapter.space(params) if adapter.space else None
    cfg = None if space is None else jax.eval_shape(space.sample, jax.random.key(0))
    changed: list[str] = []

    def probe(params: Params, aparams: AParams, cfg: Config) -> None:
        before = flatten(params)
        after = flatten(adapter.apply(params, aparams, cfg))
        changed.extend(p for p, v in after.items() if v is not before[p])

    jax.eval_shape(probe, params, aparams, cfg)
    return changed
