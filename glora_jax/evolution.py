"""Evolutionary search for a GLoRA subnet under a parameter budget (paper §2.5).

The update follows the authors' ``EvolutionSearcher`` (Arnav0400/ViT-Slim, GLoRA/):

    generation 0:  ``population`` random legal candidates
    generation g:  ``num_mutations`` children of random top-k parents (each gene resampled with
                   probability ``mutation_prob``) + ``num_crossovers`` children of two random
                   top-k parents (each gene from either), then random legal candidates until
                   there are ``population``
    after each:    top-k = the ``top_k`` best of (top-k so far + the generation's candidates)

A candidate is legal when its parameter count is <= ``param_budget`` and it was never seen
before (a visited set keyed by the genes' bytes), so every candidate is scored exactly once.
Each operator (mutation, crossover, random fill) makes at most ``max_tries`` proposals per
generation (the reference: 10 x the number wanted, 250, for mutation and crossover; random
sampling unbounded). Where generation 0's random population cannot be filled, it raises
ValueError; a later generation's random fill stops after ``max_tries`` proposals and the
generation scores the candidates it has (on ViT-B/16's large space about half of all random
subnets fit 1M parameters, so the fill completes there).
One deliberate difference: the reference breeds and scores one more generation after its last
ranking and never ranks it; here ``generations`` rounds are scored and all of them are ranked.

Every random draw comes from one ``numpy.random.Generator`` seeded by ``seed`` (random sampling
uses ``space.sample`` with jax keys drawn from it), and its state is checkpointed after each
generation, so an interrupted search resumes to exactly the uninterrupted result. A caller's
``data_fingerprint`` (a digest of the examples ``score_fn`` scores on) is saved with the state, so
a resume on other data is refused rather than ranking scores of two data sets together.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
import numbers
import os
import pathlib
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import numpy as np
from jax.experimental import multihost_utils

from peft_core.atomic_files import replacing
from peft_core.progress import progress_bar

log = logging.getLogger(__name__)

Config = Any
Genes = np.ndarray
ScoreFn = Callable[[Config], Any]
STATE_FILE = "evolution_state.npz"


class SearchSpace(Protocol):
    """What the search needs of a space (``glora_jax.space.GLoRASpace`` provides it).

    Genes are an int matrix (G, 5): one row per layer slice, one option index per tensor A..E.
    ``to_genes`` / ``from_genes`` / ``num_params`` keep leading batch axes of their input.
    """

    def to_genes(self, cfg: Config) -> Genes: ...

    def from_genes(self, genes: Genes) -> Config: ...

    def sample(self, rng: jax.Array, batch_shape: tuple[int, ...] = ()) -> Config: ...

    def mutate(self, rng: np.random.Generator, genes: Genes, prob: float) -> Genes: ...

    def crossover(self, rng: np.random.Generator, genes_a: Genes, genes_b: Genes) -> Genes: ...

    def num_params(self, cfg: Config) -> Any: ...


#: The methods ``SearchSpace`` declares (what ``evolutionary_search`` checks a space for).
_SPACE_METHODS = tuple(n for n, v in vars(SearchSpace).items() if callable(v) and n[0] != "_")


@dataclasses.dataclass(frozen=True)
class GenerationStats:
    """One row of the search history; ``seconds`` is the wall time since the search began."""

    generation: int
    best_score: float
    mean_top_k_score: float
    candidates_evaluated: int
    seconds: float


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """The chosen subnet and every candidate scored on the way (N of them, genes (G, 5))."""

    best_cfg: Config
    best_genes: Genes
    best_score: float
    best_num_params: int
    param_budget: int
    history: list[GenerationStats]
    evaluated_genes: np.ndarray  # (N, G, 5) int32, in scoring order
    evaluated_scores: np.ndarray  # (N,) float64
    evaluated_num_params: np.ndarray  # (N,) int64
    evaluated_generation: np.ndarray  # (N,) int32
    seconds: float

    @property
    def candidates_evaluated(self) -> int:
        return len(self.evaluated_scores)


@dataclasses.dataclass(frozen=True)
class _Settings:
    """Every knob that shapes the search trajectory; a resumed search must match them."""

    param_budget: int
    seed: int
    population: int
    top_k: int
    num_mutations: int
    mutation_prob: float
    num_crossovers: int
    max_tries: int
    genes_shape: tuple[int, ...]
    #: ``_fingerprint(space)``: what a gene means, so a checkpoint of another space is refused
    space: str


class DataMismatchError(ValueError):
    """The search state in ``path`` scored its candidates on other data (its ``data_fingerprint``
    ``saved``) than a resume names (``now``)."""

    def __init__(self, path: pathlib.Path, saved: str, now: str) -> None:
        self.path, self.saved, self.now = path, saved, now
        super().__init__(
            f"{self.what()}; use another checkpoint_dir, or the data it was scored on, or delete "
            f"{path} to search anew"
        )

    def what(self) -> str:
        """The message's refusal, without its remedy (a caller may name its own)."""
        return (
            f"search state in {self.path} scored its candidates on other data (data_fingerprint "
            f"saved {self.saved!r}, now {self.now!r}): resuming would rank scores of two data "
            f"sets together"
        )


@dataclasses.dataclass
class _State:
    """Search progress: everything scored so far, the top-k and the RNG."""

    rng: np.random.Generator
    generation: int = 0
    genes: list[Genes] = dataclasses.field(default_factory=list)
    scores: list[float] = dataclasses.field(default_factory=list)
    num_params: list[int] = dataclasses.field(default_factory=list)
    born: list[int] = dataclasses.field(default_factory=list)
    top_k: list[int] = dataclasses.field(default_factory=list)
    history: list[GenerationStats] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    index: dict[bytes, int] = dataclasses.field(default_factory=dict)
    #: the caller's name of the data every score was computed on (None: not recorded)
    data_fingerprint: str | None = None

    def add(self, genes: Genes, score: float, num_params: int, generation: int) -> int:
        self.index[genes.tobytes()] = len(self.genes)
        self.genes.append(genes)
        self.scores.append(score)
        self.num_params.append(num_params)
        self.born.append(generation)
        return len(self.genes) - 1


def evolutionary_search(
    space: SearchSpace,
    score_fn: ScoreFn,
    *,
    param_budget: int,
    seed: int = 0,
    population: int = 50,
    top_k: int = 10,
    num_mutations: int = 25,
    mutation_prob: float = 0.2,
    num_crossovers: int = 25,
    generations: int = 20,
    max_tries: int = 250,
    batch_size: int | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    data_fingerprint: str | None = None,
    progress: bool = True,
    on_generation: Callable[[GenerationStats], None] | None = None,
) -> SearchResult:
    """Search ``space`` for the highest-scoring config with ``num_params <= param_budget``.

    ``score_fn(cfgs) -> (B,)`` scores a batch of configs stacked on a leading axis; it is always
    called with ``B == batch_size`` (default ``population``): the last batch of a generation is
    padded with copies whose scores are dropped, so a jitted ``score_fn`` compiles once.
    With ``checkpoint_dir`` the state is saved after every generation and a later call with the
    same directory and settings resumes from it: a larger ``generations`` extends the search, a
    smaller one returns the result of its first ``generations`` (each generation draws from
    the ones before it only, so that is exactly the shorter search) and leaves the state as it
    is. ``data_fingerprint`` names the data ``score_fn`` scores on (a digest of its examples):
    it is saved with the state (in the same file, written atomically), and a resume with
    another one raises ``DataMismatchError`` (a ValueError), since the saved candidates were
    scored on other data and their scores cannot be ranked with new ones; a state that records
    none (saved by an older version, or without one) resumes with a warning and records it with
    its next generation (a search no longer than the saved one runs none: the state stays as it
    is); None compares nothing (a saved fingerprint is kept). A population below
    num_mutations + num_crossovers is warned about: it sizes generation 0 only.
    On several processes (``jax.process_count() > 1``: each calls this with the same arguments,
    ``score_fn`` a collective) process 0 writes the state, ``checkpoint_dir`` must be shared,
    and a resume that finds another generation on some process raises instead of mixing two
    searches' candidates in one collective. ``on_generation(stats)`` runs after each
    generation's checkpoint.
    """
    lacking = [m for m in _SPACE_METHODS if not callable(getattr(space, m, None))]
    if lacking:
        raise TypeError(
            f"evolutionary_search needs a SearchSpace (such as GLoRA's adapter.space(params)); "
            f"a {type(space).__name__} has no {', '.join(lacking)}"
        )
    knobs = {
        "param_budget": param_budget, "seed": seed, "population": population, "top_k": top_k,
        "num_mutations": num_mutations, "mutation_prob": mutation_prob,
        "num_crossovers": num_crossovers, "max_tries": max_tries,
    }  # fmt: skip
    settings = _space_settings(space, knobs)
    generations, batch_size = _validate(settings, generations=generations, batch_size=batch_size)
    _check_fingerprint(data_fingerprint)
    path = _state_path(checkpoint_dir)
    if path is not None and path.exists():
        state = _load_state(path, settings, space, data_fingerprint=data_fingerprint)
        log.info("resuming the search after generation %d from %s", state.generation, path)
    else:
        state = _State(rng=np.random.default_rng(settings.seed), data_fingerprint=data_fingerprint)
    if jax.process_count() > 1:
        multihost_utils.assert_equal(
            np.int64(state.generation),
            f"processes would resume the search at different generations: checkpoint_dir "
            f"{checkpoint_dir} must be one folder that every process reads",
        )
    if state.generation > generations:
        log.info("the saved search is longer: its first %d generations are the result", generations)
        state = _first_generations(state, generations, settings.top_k)
        return _result(space, state, settings.param_budget)
    bred = settings.num_mutations + settings.num_crossovers
    if generations > max(state.generation, 1) and bred > settings.population:
        warnings.warn(
            f"population={settings.population} sizes generation 0 only: each later generation "
            f"breeds num_mutations + num_crossovers = {bred} candidates (the random fill tops a "
            "generation up to population, it cuts none)",
            stacklevel=2,
        )
    save_to = path if jax.process_index() == 0 else None  # process 0 writes the shared state
    ops = _FixedWidth.of(space, settings)
    started = time.perf_counter() - state.seconds
    with progress_bar(
        total=generations, initial=state.generation, disable=not progress, desc="evolution"
    ) as bar:
        while state.generation < generations:
            generation = state.generation
            candidates = _next_generation(ops, state, settings)
            scores = _score(space, score_fn, [g for g, _ in candidates], batch_size=batch_size)
            new = [
                state.add(g, float(s), n, generation)
                for (g, n), s in zip(candidates, scores, strict=True)
            ]
            # Stable sort: on equal scores the earlier candidate stays ahead, as in the reference.
            ranked = sorted(state.top_k + new, key=lambda i: -state.scores[i])
            state.top_k = ranked[: settings.top_k]
            state.generation += 1
            state.seconds = time.perf_counter() - started
            stats = _stats(state)
            state.history.append(stats)
            if save_to is not None:
                _save_state(save_to, state, settings)
            bar.set_postfix(
                best=f"{stats.best_score:.4f}", evaluated=stats.candidates_evaluated, refresh=False
            )
            bar.update(1)
            if on_generation is not None:
                on_generation(stats)
    return _result(space, state, settings.param_budget)


def _fingerprint(space: SearchSpace) -> str:
    """sha256 of a dataclass space's repr (GLoRASpace: its ranks and every layer's name and
    shapes), else of its class's qualified name (a repr may hold a memory address)."""
    key = repr(space) if dataclasses.is_dataclass(space) else type(space).__qualname__
    return hashlib.sha256(key.encode()).hexdigest()


def check_settings(
    *,
    generations: int = 20,
    batch_size: int | None = None,
    space: SearchSpace | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    data_fingerprint: str | None = None,
    **knobs: Any,
) -> None:
    """The ValueError ``evolutionary_search`` would raise for these keyword settings
    (param_budget, seed, population, ...), to refuse them before costly work. Without a
    ``space`` the settings alone are checked; with one, generation 0 is also drawn as the
    search draws it (the same seed), so a ``param_budget`` that too few random configs fit
    fails here and not after the supernet trained (about a second for ViT-B). With a
    ``checkpoint_dir`` (and the ``space``) the state saved there is read as a resume would
    read it: one of other settings, another space or another ``data_fingerprint`` fails here
    too (reads only; a state that records no fingerprint is warned about by the search)."""
    if space is None:
        if checkpoint_dir is not None:
            raise ValueError("check_settings needs the space to check a checkpoint_dir's state")
        settings = _settings(knobs, genes_shape=(1, 1), space="")
    else:
        settings = _space_settings(space, knobs)
    _validate(settings, generations=generations, batch_size=batch_size)
    _check_fingerprint(data_fingerprint)
    if space is not None:
        first = _State(rng=np.random.default_rng(settings.seed))
        _next_generation(_FixedWidth.of(space, settings), first, settings)
    path = _state_path(checkpoint_dir)
    if space is not None and path is not None and path.exists():
        _load_state(path, settings, space, data_fingerprint=data_fingerprint, warn=False)


def _state_path(checkpoint_dir: str | os.PathLike[str] | None) -> pathlib.Path | None:
    """Where the search state of ``checkpoint_dir`` is saved (None: no checkpoints)."""
    return None if checkpoint_dir is None else pathlib.Path(checkpoint_dir) / STATE_FILE


def _check_fingerprint(data_fingerprint: Any) -> None:
    """ValueError unless ``data_fingerprint`` is a string or None (it is saved as JSON and
    compared as read back)."""
    if data_fingerprint is not None and not isinstance(data_fingerprint, str):
        raise ValueError(
            f"evolutionary_search: data_fingerprint must be a string or None, got "
            f"{data_fingerprint!r}"
        )


def _space_settings(space: SearchSpace, knobs: dict[str, Any]) -> _Settings:
    """``_settings`` for ``space``: its genes' shape and fingerprint."""
    genes_shape = space.to_genes(space.sample(jax.random.key(0))).shape
    return _settings(knobs, genes_shape=tuple(genes_shape), space=_fingerprint(space))


def _settings(knobs: dict[str, Any], *, genes_shape: tuple[int, ...], space: str) -> _Settings:
    """``_Settings`` of ``evolutionary_search``'s knobs (its defaults for those not given),
    counts as Python ints and ``mutation_prob`` a float; ValueError for another type."""
    defaults = {
        p.name: p.default
        for p in inspect.signature(evolutionary_search).parameters.values()
        if p.name in {f.name for f in dataclasses.fields(_Settings)} - {"genes_shape", "space"}
    }
    if unknown := sorted(set(knobs) - set(defaults)):
        raise ValueError(f"unknown search settings {unknown}; known: {sorted(defaults)}")
    if "param_budget" not in knobs:
        raise ValueError("evolutionary_search needs a param_budget")
    values = defaults | knobs
    counts = {k: _integer(k, v) for k, v in values.items() if k != "mutation_prob"}
    prob = values["mutation_prob"]
    if not isinstance(prob, numbers.Real) or isinstance(prob, bool):
        raise ValueError(f"evolutionary_search: mutation_prob must be a number, got {prob!r}")
    return _Settings(
        **counts,
        mutation_prob=float(prob),
        genes_shape=tuple(int(d) for d in genes_shape),
        space=space,
    )


def _integer(name: str, value: Any) -> int:
    """``value`` as a Python int (numpy integers, integral floats); ValueError otherwise."""
    integral = isinstance(value, numbers.Integral) or (
        isinstance(value, float) and value.is_integer()
    )
    if integral and not isinstance(value, bool):
        return int(value)
    raise ValueError(f"evolutionary_search: {name} must be an integer, got {value!r}")


def _validate(settings: _Settings, *, generations: Any, batch_size: Any) -> tuple[int, int]:
    """``generations`` and ``batch_size`` (None: ``population``) as ints; ValueError for a
    non-integer one or for settings out of their ranges."""
    s = settings
    generations = _integer("generations", generations)
    batch_size = s.population if batch_size is None else _integer("batch_size", batch_size)
    checks = {
        "param_budget must be >= 0": s.param_budget >= 0,
        "top_k must be >= 1": s.top_k >= 1,
        "population must be >= top_k": s.population >= s.top_k,
        "num_mutations must be >= 0": s.num_mutations >= 0,
        "num_crossovers must be >= 0": s.num_crossovers >= 0,
        "mutation_prob must be in [0, 1]": 0.0 <= s.mutation_prob <= 1.0,
        "generations must be >= 1": generations >= 1,
        "max_tries must be >= population (generation 0 draws population configs)": (
            s.max_tries >= s.population
        ),
        "batch_size must be >= 1": batch_size >= 1,
    }
    failed = [rule for rule, ok in checks.items() if not ok]
    if failed:
        knobs = {
            k: v for k, v in dataclasses.asdict(s).items() if k not in ("genes_shape", "space")
        }
        got = knobs | {"generations": generations, "batch_size": batch_size}
        raise ValueError(f"evolutionary_search: {'; '.join(failed)} (got {got})")
    if len(s.genes_shape) != 2:
        raise ValueError(f"space.to_genes must return (layers, tensors) genes, got {s.genes_shape}")
    return generations, batch_size


def _next_generation(
    ops: _FixedWidth, state: _State, settings: _Settings
) -> list[tuple[Genes, int]]:
    """The generation's legal candidates as (genes, num_params), in the reference's order."""
    rng = state.rng
    claimed: set[bytes] = set()

    def collect(propose: Callable[[int], list[Genes]], n: int) -> list[tuple[Genes, int]]:
        return _collect(ops, state, settings, claimed, propose, n)

    def sample(n: int) -> list[Genes]:
        out: list[Genes] = []
        while len(out) < n:
            out += ops.sample_genes(_jax_key(rng))[: n - len(out)]
        return out

    if state.generation == 0:
        drawn: list[Genes] = []  # every proposal, to say why too few were legal

        def sample_recorded(n: int) -> list[Genes]:
            drawn.extend(genes := sample(n))
            return genes

        candidates = collect(sample_recorded, settings.population)
        if len(candidates) < settings.population:
            over = int(np.sum(ops.num_params(drawn) > settings.param_budget))
            raise ValueError(
                f"only {len(candidates)} of {settings.population} random configs drawn in "
                f"{settings.max_tries} tries fit param_budget={settings.param_budget} ({over} "
                f"tries were over it, {len(drawn) - over - len(candidates)} repeated a config "
                "drawn before): raise the budget or max_tries, or, where tries repeat (a space "
                "of few configs), lower population"
            )
        return candidates
    parents = [state.genes[i] for i in state.top_k]

    def parent() -> Genes:
        return parents[rng.integers(len(parents))]

    def mutate(n: int) -> list[Genes]:
        return [ops.space.mutate(rng, parent(), settings.mutation_prob) for _ in range(n)]

    def cross(n: int) -> list[Genes]:
        return [ops.space.crossover(rng, parent(), parent()) for _ in range(n)]

    candidates = collect(mutate, settings.num_mutations)
    candidates += collect(cross, settings.num_crossovers)
    candidates += collect(sample, max(0, settings.population - len(candidates)))
    return candidates


def _collect(
    ops: _FixedWidth,
    state: _State,
    settings: _Settings,
    claimed: set[bytes],
    propose: Callable[[int], list[Genes]],
    n: int,
) -> list[tuple[Genes, int]]:
    """Up to ``n`` new legal candidates from at most ``max_tries`` proposals.

    Proposals are drawn in chunks of the number still missing, each chunk counted in one
    batched ``num_params`` call. Accepted keys go into ``claimed``.
    """
    found: list[tuple[Genes, int]] = []
    tries = 0
    while len(found) < n and tries < settings.max_tries:
        chunk = min(n - len(found), settings.max_tries - tries)
        tries += chunk
        proposals = [np.asarray(g, dtype=np.int32) for g in propose(chunk)]
        for genes in proposals:
            if genes.shape != settings.genes_shape:
                raise ValueError(
                    f"space returned genes of shape {genes.shape}, expected {settings.genes_shape}"
                )
        for genes, count in zip(proposals, ops.num_params(proposals), strict=True):
            key = genes.tobytes()
            if key in state.index or key in claimed or count > settings.param_budget:
                continue
            claimed.add(key)
            found.append((genes, int(count)))
    return found


def _jax_key(rng: np.random.Generator) -> jax.Array:
    return jax.random.key(int(rng.integers(2**32)))


def _stack_cfgs(space: SearchSpace, genes: Sequence[Genes]) -> Config:
    """One batched config (leading axis ``len(genes)``) of several gene matrices."""
    return space.from_genes(np.stack(genes))


def _padded_batches(
    fn: Callable[[Config], Any],
    space: SearchSpace,
    genes: Sequence[Genes],
    *,
    width: int,
    what: str,
) -> np.ndarray:
    """``fn`` on the configs of ``genes`` in batches of exactly ``width``: (len(genes),).

    The last batch is padded with copies of its last config and their outputs dropped, so a
    jitted ``fn`` sees one shape. Raises ValueError unless ``fn`` returns one value per config.
    """
    out = [np.zeros((0,))]
    for start in range(0, len(genes), width):
        chunk = list(genes[start : start + width])
        values = np.asarray(fn(_stack_cfgs(space, chunk + [chunk[-1]] * (width - len(chunk)))))
        if values.shape != (width,):
            raise ValueError(
                f"{what} must return one value per config, shape ({width},); got {values.shape}"
            )
        out.append(values[: len(chunk)])
    return np.concatenate(out)


class _FixedWidth:
    """The space's sampling and counting at one batch width, so jax compiles each op once."""

    def __init__(self, space: SearchSpace, width: int) -> None:
        self.space = space
        self.width = width

    @classmethod
    def of(cls, space: SearchSpace, settings: _Settings) -> _FixedWidth:
        """The width of the search's widest proposal batch."""
        return cls(space, max(settings.population, settings.num_mutations, settings.num_crossovers))

    def sample_genes(self, key: jax.Array) -> list[Genes]:
        """``width`` random gene matrices from one key."""
        return list(self.space.to_genes(self.space.sample(key, batch_shape=(self.width,))))

    def num_params(self, genes: Sequence[Genes]) -> np.ndarray:
        """(len(genes),) int64 parameter counts."""
        counts = _padded_batches(
            self.space.num_params, self.space, genes, width=self.width, what="space.num_params"
        )
        return counts.astype(np.int64)


def _score(
    space: SearchSpace, score_fn: ScoreFn, genes: Sequence[Genes], *, batch_size: int
) -> np.ndarray:
    """(len(genes),) float64 scores from ``score_fn`` called on full batches of ``batch_size``."""
    scores = _padded_batches(score_fn, space, genes, width=batch_size, what="score_fn")
    scores = scores.astype(np.float64)
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"score_fn returned non-finite scores: {scores}")
    return scores


def _stats(state: _State) -> GenerationStats:
    top = [state.scores[i] for i in state.top_k]
    return GenerationStats(
        generation=state.generation - 1,
        best_score=top[0],
        mean_top_k_score=float(np.mean(top)),
        candidates_evaluated=len(state.scores),
        seconds=state.seconds,
    )


def _first_generations(state: _State, generations: int, top_k: int) -> _State:
    """The state after ``generations`` (>= 1) of a longer search's: its candidates (added in
    generation order) and history cut there, the top-k rebuilt by the same stable sort (the
    candidates it keeps are the first k of all by score, earlier first on ties)."""
    n = sum(1 for born in state.born if born < generations)
    return dataclasses.replace(
        state,
        generation=generations,
        genes=state.genes[:n],
        scores=state.scores[:n],
        num_params=state.num_params[:n],
        born=state.born[:n],
        top_k=sorted(range(n), key=lambda i: -state.scores[i])[:top_k],
        history=state.history[:generations],
        seconds=state.history[generations - 1].seconds,
        index={genes.tobytes(): i for i, genes in enumerate(state.genes[:n])},
    )


def _result(space: SearchSpace, state: _State, param_budget: int) -> SearchResult:
    best = state.top_k[0]
    return SearchResult(
        best_cfg=space.from_genes(state.genes[best]),
        best_genes=state.genes[best],
        best_score=state.scores[best],
        best_num_params=state.num_params[best],
        param_budget=param_budget,
        history=list(state.history),
        evaluated_genes=np.stack(state.genes),
        evaluated_scores=np.asarray(state.scores, np.float64),
        evaluated_num_params=np.asarray(state.num_params, np.int64),
        evaluated_generation=np.asarray(state.born, np.int32),
        seconds=state.seconds,
    )


def _save_state(path: pathlib.Path, state: _State, settings: _Settings) -> None:
    """Write the state to ``path`` atomically (``peft_core.atomic_files.replacing``)."""
    meta = {
        "settings": dataclasses.asdict(settings),
        "generation": state.generation,
        "seconds": state.seconds,
        "history": [dataclasses.asdict(h) for h in state.history],
        "rng": state.rng.bit_generator.state,
        "data_fingerprint": state.data_fingerprint,
    }

    with replacing(path) as partial, partial.open("wb") as f:
        np.savez(
            f,
            meta=np.asarray(json.dumps(meta)),
            genes=np.stack(state.genes),
            scores=np.asarray(state.scores, np.float64),
            num_params=np.asarray(state.num_params, np.int64),
            born=np.asarray(state.born, np.int32),
            top_k=np.asarray(state.top_k, np.int64),
        )


def _load_state(
    path: pathlib.Path,
    settings: _Settings,
    space: SearchSpace,
    *,
    data_fingerprint: str | None,
    warn: bool = True,
) -> _State:
    """The state saved in ``path``; ValueError unless it was saved with these ``settings`` (the
    space included) and ``data_fingerprint`` (None: any; a state that records none is warned
    about unless not ``warn``, and takes this one) and holds legal genes of ``space``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in ("genes", "scores", "num_params", "born", "top_k")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"{path} is not a readable search state ({type(error).__name__}: {error}); delete it "
            "to start the search over"
        ) from error
    saved = meta["settings"] | {"genes_shape": tuple(meta["settings"]["genes_shape"])}
    current = dataclasses.asdict(settings)
    differ = {k: (saved.get(k), current[k]) for k in current if saved.get(k) != current[k]}
    if differ:
        what = ""
        if "space" in differ:
            what = "another search space (ranks, layers or their shapes)"
            if "space" not in saved:
                what = "a version of glora_jax that did not record the space"
        raise ValueError(
            f"search state in {path} was written with other settings (saved, now): {differ}"
            f"{'; ' + what if what else ''}; use another checkpoint_dir or the same settings"
        )
    saved_data = meta.get("data_fingerprint")  # an older version's state records none
    if data_fingerprint is not None and saved_data is not None and saved_data != data_fingerprint:
        raise DataMismatchError(path, saved_data, data_fingerprint)
    if data_fingerprint is not None and saved_data is None and warn:
        log.warning(
            "search state in %s records no data fingerprint (saved by an older version, or "
            "without one): it resumes unchecked on data %s, which it records from its next "
            "generation; if the data changed since, delete it to search anew",
            path, data_fingerprint,
        )  # fmt: skip
    space.from_genes(arrays["genes"])  # raises for genes illegal in this space
    rng = np.random.default_rng()
    rng.bit_generator.state = meta["rng"]
    state = _State(
        rng=rng,
        generation=int(meta["generation"]),
        top_k=[int(i) for i in arrays["top_k"]],
        history=[GenerationStats(**h) for h in meta["history"]],
        seconds=float(meta["seconds"]),
        data_fingerprint=saved_data if data_fingerprint is None else data_fingerprint,
    )
    for genes, score, count, born in zip(
        arrays["genes"], arrays["scores"], arrays["num_params"], arrays["born"], strict=True
    ):
        state.add(genes, float(score), int(count), int(born))
    return state


def save_result_json(result: SearchResult, space: Any, path: str | os.PathLike[str]) -> None:
    """Write the chosen config readably (``space.decode``) with its size and the search cost."""
    record = {
        "config": space.decode(result.best_cfg),
        "num_params": result.best_num_params,
        "param_budget": result.param_budget,
        "score": result.best_score,
        "search": {
            "generations": len(result.history),
            "candidates_evaluated": result.candidates_evaluated,
            "seconds": result.seconds,
        },
        "history": [dataclasses.asdict(h) for h in result.history],
    }
    with replacing(path) as partial:
        partial.write_text(json.dumps(record, indent=2) + "\n")
