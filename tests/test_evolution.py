"""glora_jax.evolution: the GLoRA evolutionary search on planted scores, resume and plots."""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import re
import time
import warnings
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

import glora_jax
import peft_core
from glora_jax import search_plots
from glora_jax.evolution import (
    DataMismatchError,
    SearchResult,
    check_settings,
    evolutionary_search,
    save_result_json,
)
from glora_jax.space import GLoRASpace, LayerSpec
from peft_core.atomic_files import replacing

TENSORS = "ABCDE"
RANK = 2
OPTIONS = {
    "A": ("lora_2", "vector", "scalar", "none"),
    "B": ("lora_2", "vector", "scalar", "none"),
    "C": ("lora_2", "vector", "none"),
    "D": ("vector", "scalar", "none"),
    "E": ("vector", "scalar", "none"),
}
# (name, fan_in, fan_out) of a 2-block toy ViT in big_vision naming: 8 layers x 5 tensors.
LAYERS = [
    (f"Transformer/encoderblock_{b}/{name}", fan_in, fan_out)
    for b in range(2)
    for name, fan_in, fan_out in (
        ("MultiHeadDotProductAttention_0/qkv", 8, 24),
        ("MultiHeadDotProductAttention_0/out", 8, 8),
        ("MlpBlock_0/Dense_0", 8, 32),
        ("MlpBlock_0/Dense_1", 32, 8),
    )
]


def option_cost(tensor: str, option: str, fan_in: int, fan_out: int) -> int:
    """GLoRA's parameter count of one support tensor (reference-semantics.md)."""
    if option == "lora_2":
        return RANK * (fan_in + 1) if tensor == "C" else RANK * (fan_in + fan_out)
    if option == "vector":
        return fan_in if tensor == "C" else fan_out
    return {"scalar": 1, "none": 0}[option]


class FakeSpace:
    """The GLoRASpace API on a table of option costs; cfg = {tensor: int32 (..., layers)}."""

    def __init__(self) -> None:
        self.layers = self.slice_names = [name for name, _, _ in LAYERS]
        self.options = OPTIONS
        self.num_options = np.array([len(OPTIONS[t]) for t in TENSORS])
        self.cost = np.zeros((len(LAYERS), len(TENSORS), 4), np.int64)  # padded to 4 options
        for i, (_, fan_in, fan_out) in enumerate(LAYERS):
            for j, t in enumerate(TENSORS):
                for k, o in enumerate(OPTIONS[t]):
                    self.cost[i, j, k] = option_cost(t, o, fan_in, fan_out)

    def to_genes(self, cfg):
        return np.stack([np.asarray(cfg[t]) for t in TENSORS], axis=-1).astype(np.int32)

    def from_genes(self, genes):
        return {t: np.asarray(genes[..., j], np.int32) for j, t in enumerate(TENSORS)}

    def sample(self, rng, batch_shape=()):
        keys = jax.random.split(rng, len(TENSORS))
        shape = (*batch_shape, len(LAYERS))
        return {
            t: jax.random.randint(k, shape, 0, n, jnp.int32)
            for t, k, n in zip(TENSORS, keys, self.num_options, strict=True)
        }

    def mutate(self, rng, genes, prob):
        fresh = rng.integers(0, self.num_options, size=genes.shape)
        return np.where(rng.random(genes.shape) < prob, fresh, genes).astype(np.int32)

    def crossover(self, rng, genes_a, genes_b):
        return np.where(rng.random(genes_a.shape) < 0.5, genes_a, genes_b).astype(np.int32)

    def num_params(self, cfg):
        rows = jnp.arange(len(LAYERS))
        cost = jnp.asarray(self.cost)
        return sum(cost[rows, j, cfg[t]].sum(-1) for j, t in enumerate(TENSORS))

    def decode(self, cfg):
        return {
            name: {t: OPTIONS[t][int(cfg[t][i])] for t in TENSORS}
            for i, name in enumerate(self.layers)
        }


SPACE = FakeSpace()
NONE_GENES = np.array([[OPTIONS[t].index("none") for t in TENSORS]] * len(LAYERS), np.int32)


def cost_of(genes: np.ndarray) -> int:
    """Independent numpy parameter count of genes (L, 5)."""
    return int(sum(SPACE.cost[i, j, genes[i, j]] for i in range(len(LAYERS)) for j in range(5)))


def target_genes(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, SPACE.num_options) for _ in LAYERS]).astype(np.int32)


TARGET = target_genes(123)
TARGET_BUDGET = cost_of(TARGET) + 40


def matches_target(cfgs) -> np.ndarray:
    """Planted score: how many genes equal TARGET (max 40, only TARGET reaches it)."""
    return (SPACE.to_genes(cfgs) == TARGET).sum(axis=(-2, -1)).astype(np.float64)


VALUE = np.random.default_rng(7).uniform(0.5, 1.0, size=SPACE.cost.shape) * np.sqrt(SPACE.cost)
KNAPSACK_BUDGET = 600


def separable_value(cfgs) -> np.ndarray:
    """Planted score: sum over genes of VALUE[layer, tensor, option] (concave in cost)."""
    genes = SPACE.to_genes(cfgs)
    rows, cols = np.arange(len(LAYERS))[:, None], np.arange(5)[None, :]
    return VALUE[rows, cols, genes].sum(axis=(-2, -1))


def knapsack_optimum(budget: int) -> float:
    """Exact best separable_value within budget: multiple-choice knapsack by dynamic programming."""
    best = np.zeros(budget + 1)  # best[c]: best value using cost <= c
    for i in range(len(LAYERS)):
        for j, t in enumerate(TENSORS):
            options = [(SPACE.cost[i, j, k], VALUE[i, j, k]) for k in range(len(OPTIONS[t]))]
            new = np.full(budget + 1, -np.inf)
            for cost, value in options:
                new[cost:] = np.maximum(new[cost:], best[: budget + 1 - cost] + value)
            best = new
    return float(best[budget])


def search(score_fn=matches_target, **kwargs) -> SearchResult:
    kwargs = {"param_budget": TARGET_BUDGET, "progress": False, **kwargs}
    return evolutionary_search(SPACE, score_fn, **kwargs)


def random_best(score_fn, n: int, budget: int, seed: int) -> float:
    """Best score of n random configs within the budget (the baseline the search must beat)."""
    cfgs = SPACE.sample(jax.random.key(seed), batch_shape=(20 * n,))
    cfgs = {t: np.asarray(v) for t, v in cfgs.items()}
    legal = np.asarray(SPACE.num_params(cfgs)) <= budget
    scores = score_fn(cfgs)[legal][:n]
    assert len(scores) == n
    return float(scores.max())


@pytest.fixture(scope="module")
def target_result() -> SearchResult:
    return search(seed=0)


def test_fake_space_cost_matches_numpy():
    genes = target_genes(5)
    assert int(SPACE.num_params(SPACE.from_genes(genes))) == cost_of(genes)
    assert cost_of(NONE_GENES) == 0


def test_finds_planted_target_and_beats_random(target_result):
    r = target_result
    assert r.candidates_evaluated == 50 * 20
    assert r.best_score >= TARGET.size - 3  # 39 of 40 genes at seed 0; random: ~21
    assert r.best_score == matches_target(SPACE.from_genes(r.best_genes))
    assert r.best_num_params == cost_of(r.best_genes) <= TARGET_BUDGET
    assert r.best_score > random_best(matches_target, 1000, TARGET_BUDGET, 0) + 10


def test_near_knapsack_optimum_under_binding_budget():
    optimum = knapsack_optimum(KNAPSACK_BUDGET)
    assert optimum < knapsack_optimum(int(SPACE.cost.max(-1).sum()))  # the budget binds
    r = search(separable_value, param_budget=KNAPSACK_BUDGET, seed=1)
    assert r.best_score <= optimum + 1e-9
    assert r.best_score >= 0.95 * optimum  # 0.96 at seed 1; random sampling: ~0.79
    assert r.best_score > random_best(separable_value, 1000, KNAPSACK_BUDGET, 1) + 0.1 * optimum


class FlatCostSpace(FakeSpace):
    """Every config costs 100 parameters."""

    def num_params(self, cfg):
        return jnp.full(np.shape(cfg["A"])[:-1], 100)


def test_a_candidate_at_exactly_the_budget_is_legal():
    """Legal means num_params <= param_budget: at 100 every candidate is, at 99 none."""
    kwargs = {"generations": 2, "population": 10, "top_k": 4, "progress": False}
    kwargs |= {"num_mutations": 4, "num_crossovers": 4}
    r = evolutionary_search(FlatCostSpace(), matches_target, param_budget=100, **kwargs)
    assert r.candidates_evaluated == 20 and set(r.evaluated_num_params) == {100}
    with pytest.raises(ValueError, match="param_budget=99"):
        evolutionary_search(FlatCostSpace(), matches_target, param_budget=99, **kwargs)


def test_every_candidate_legal_new_and_recorded(target_result):
    r = target_result
    counts = np.array([cost_of(g) for g in r.evaluated_genes])
    np.testing.assert_array_equal(r.evaluated_num_params, counts)
    assert counts.max() <= TARGET_BUDGET
    assert len({g.tobytes() for g in r.evaluated_genes}) == r.candidates_evaluated
    np.testing.assert_array_equal(
        r.evaluated_scores, matches_target(SPACE.from_genes(r.evaluated_genes))
    )
    np.testing.assert_array_equal(np.bincount(r.evaluated_generation), [50] * 20)


def test_history_is_a_running_top_k(target_result):
    r = target_result
    assert [h.generation for h in r.history] == list(range(20))
    assert [h.candidates_evaluated for h in r.history] == [50 * (g + 1) for g in range(20)]
    for h in r.history:
        seen = r.evaluated_scores[r.evaluated_generation <= h.generation]
        top = np.sort(seen)[::-1][:10]
        assert h.best_score == top[0]
        assert h.mean_top_k_score == pytest.approx(top.mean())
    assert r.history[-1].best_score == r.best_score


@pytest.mark.parametrize("batch_size", [7, 50, 64])
def test_score_fn_sees_constant_batches_and_each_candidate_once(batch_size):
    calls: list[np.ndarray] = []

    def score_fn(cfgs):
        calls.append(SPACE.to_genes(cfgs))
        return matches_target(cfgs)

    r = search(score_fn, generations=3, batch_size=batch_size)
    assert {c.shape[0] for c in calls} == {batch_size}
    distinct = [{g.tobytes() for g in c} for c in calls]  # padding repeats a row of its batch
    assert sum(len(d) for d in distinct) == r.candidates_evaluated == 150
    assert set().union(*distinct) == {g.tobytes() for g in r.evaluated_genes}


@pytest.mark.filterwarnings("ignore:population=50 sizes generation 0 only")  # (40, 40): meant
@pytest.mark.parametrize(("num_mutations", "num_crossovers"), [(0, 25), (25, 0), (0, 0), (40, 40)])
def test_generation_is_children_then_random_fill(num_mutations, num_crossovers):
    r = search(generations=3, num_mutations=num_mutations, num_crossovers=num_crossovers)
    sizes = np.bincount(r.evaluated_generation)
    np.testing.assert_array_equal(sizes, [50] + [max(50, num_mutations + num_crossovers)] * 2)


def test_deterministic_from_seed(target_result):
    again = search(seed=0)
    np.testing.assert_array_equal(again.evaluated_genes, target_result.evaluated_genes)
    np.testing.assert_array_equal(again.evaluated_scores, target_result.evaluated_scores)
    np.testing.assert_array_equal(again.best_genes, target_result.best_genes)
    other = search(seed=1, generations=1)
    assert not np.array_equal(other.evaluated_genes, target_result.evaluated_genes[:50])


def assert_same_search(a: SearchResult, b: SearchResult) -> None:
    """Equal in everything but wall-clock times."""

    def timeless(r: SearchResult) -> dict:
        fields = dataclasses.asdict(r) | {"seconds": 0.0}
        fields["history"] = [dataclasses.replace(h, seconds=0.0) for h in r.history]
        return fields

    chex.assert_trees_all_equal(timeless(a), timeless(b))


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    plain = search(generations=8, seed=3)

    def interrupt(stats):
        if stats.generation == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        search(generations=8, seed=3, checkpoint_dir=tmp_path, on_generation=interrupt)
    scored = []

    def score_fn(cfgs):
        scored.append(len(cfgs["A"]))
        return matches_target(cfgs)

    resumed = search(score_fn, generations=8, seed=3, checkpoint_dir=tmp_path)
    assert_same_search(resumed, plain)
    assert len(scored) == 4  # generations 4..7 only: the first four come from the checkpoint
    assert [p.name for p in tmp_path.iterdir()] == ["evolution_state.npz"]


def test_on_several_processes_process_0_writes_and_all_resume_one_generation(tmp_path, monkeypatch):
    """Process 1 of 2 reads the shared state but writes none; every start checks that all
    processes are at one generation (``multihost_utils.assert_equal``, here recorded)."""
    checked = []
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(
        glora_jax.evolution.multihost_utils, "assert_equal",
        lambda value, message: checked.append((int(value), message)),
    )  # fmt: skip
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    search(generations=2, seed=6, checkpoint_dir=tmp_path)
    assert list(tmp_path.iterdir()) == [] and [g for g, _ in checked] == [0]
    monkeypatch.setattr(jax, "process_index", lambda: 0)
    search(generations=2, seed=6, checkpoint_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["evolution_state.npz"]
    saved = (tmp_path / "evolution_state.npz").read_bytes()
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    extended = search(generations=3, seed=6, checkpoint_dir=tmp_path)  # resumes, writes nothing
    assert [g for g, _ in checked] == [0, 0, 2] and "must be one folder" in checked[-1][1]
    assert len(extended.history) == 3
    assert (tmp_path / "evolution_state.npz").read_bytes() == saved


def test_finished_search_extends_with_more_generations(tmp_path):
    search(generations=2, seed=4, checkpoint_dir=tmp_path)
    extended = search(generations=5, seed=4, checkpoint_dir=tmp_path)
    assert_same_search(extended, search(generations=5, seed=4))


def test_resume_with_other_settings_raises(tmp_path):
    search(generations=2, seed=5, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="top_k"):
        search(generations=3, seed=5, top_k=5, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="param_budget"):
        search(generations=3, seed=5, param_budget=TARGET_BUDGET + 1, checkpoint_dir=tmp_path)


def test_a_population_below_what_a_generation_breeds_is_warned_about():
    """population=4 beside 3 mutations and 3 crossovers: later generations score 6, not 4."""
    with pytest.warns(UserWarning, match="population=4 sizes generation 0 only.*= 6 candidates"):
        result = search(generations=2, population=4, top_k=2, num_mutations=3, num_crossovers=3)
    assert [h.candidates_evaluated for h in result.history] == [4, 10]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search(generations=2, population=6, top_k=2, num_mutations=3, num_crossovers=3)
        search(generations=1, population=4, top_k=2, num_mutations=3, num_crossovers=3)


def coarse_target(cfgs) -> np.ndarray:
    """matches_target in steps of 8: many ties, so the top-k's tie order matters."""
    return np.floor(matches_target(cfgs) / 8)


@pytest.mark.parametrize("score_fn", [matches_target, separable_value, coarse_target])
def test_resume_with_fewer_generations_is_the_shorter_search(tmp_path, score_fn):
    """A saved 4-generation search asked for 1 or 3 returns exactly that shorter search without
    scoring anything or touching the state, which a later call still extends."""
    search(score_fn, generations=4, seed=5, checkpoint_dir=tmp_path)
    saved = (tmp_path / "evolution_state.npz").read_bytes()

    def unused(cfgs):
        raise AssertionError("a shorter search scored a candidate")

    for generations in (1, 3):
        shorter = search(unused, generations=generations, seed=5, checkpoint_dir=tmp_path)
        assert_same_search(shorter, search(score_fn, generations=generations, seed=5))
    assert (tmp_path / "evolution_state.npz").read_bytes() == saved
    extended = search(score_fn, generations=5, seed=5, checkpoint_dir=tmp_path)
    assert_same_search(extended, search(score_fn, generations=5, seed=5))


@pytest.mark.filterwarnings("ignore:population=8 sizes generation 0 only")
def test_resume_with_another_space_raises(tmp_path):
    # the same layers with other ranks: gene k would mean another option (lora_8 -> lora_4)
    from glora_jax.space import GLoRASpace, LayerSpec

    specs = (LayerSpec("a", (), 16, 16, True), LayerSpec("b", (), 16, 32, False))
    spaces = [GLoRASpace(ranks, specs) for ranks in ((8, 4), (4, 2))]

    def score(cfgs):
        return -np.asarray(spaces[0].num_params(cfgs), np.float64)

    kwargs = {"param_budget": 10**6, "population": 8, "top_k": 2, "progress": False}
    evolutionary_search(spaces[0], score, generations=1, checkpoint_dir=tmp_path, **kwargs)
    evolutionary_search(spaces[0], score, generations=2, checkpoint_dir=tmp_path, **kwargs)
    with pytest.raises(ValueError, match="another search space"):
        evolutionary_search(spaces[1], score, generations=3, checkpoint_dir=tmp_path, **kwargs)


@pytest.mark.filterwarnings("ignore:population=8 sizes generation 0 only")
def test_a_state_holding_an_illegal_candidate_is_refused_on_resume(tmp_path):
    """A state whose genes name an option the space lacks (a hand-edited or damaged file) is
    refused when loaded, also where the candidate is no parent, so nothing would touch it."""
    space = GLoRASpace(
        (8, 4), (LayerSpec("a", (), 16, 16, True), LayerSpec("b", (), 16, 32, False))
    )

    def score(cfgs):
        return -np.asarray(space.num_params(cfgs), np.float64)

    kwargs = {"param_budget": 10**6, "population": 8, "top_k": 2, "progress": False}
    evolutionary_search(space, score, generations=1, checkpoint_dir=tmp_path, **kwargs)
    state = tmp_path / "evolution_state.npz"
    with np.load(state) as data:
        arrays = {k: data[k] for k in data.files}
    (outside,) = sorted(set(range(8)) - set(arrays["top_k"].tolist()))[:1]
    arrays["genes"][outside, 0, 0] = 99
    np.savez(state, **arrays)
    with pytest.raises(ValueError, match="option index 99 out of range"):
        evolutionary_search(space, score, generations=2, checkpoint_dir=tmp_path, **kwargs)


def test_numpy_integer_settings_are_saved_as_ints(tmp_path):
    # json cannot write numpy ints: converted up front, not after generation 0 was scored
    budget = np.int64(TARGET_BUDGET)
    result = search(generations=1, seed=np.int64(3), param_budget=budget, checkpoint_dir=tmp_path)
    assert result.param_budget == TARGET_BUDGET and type(result.param_budget) is int
    assert_same_search(result, search(generations=1, seed=3))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"population": 300, "max_tries": 250}, "max_tries must be >= population"),
        ({"param_budget": 1.5}, "param_budget must be an integer"),
        ({"population": 5, "top_k": 10}, "population must be >= top_k"),
        ({"top_k": 0}, "top_k must be >= 1"),
        ({"mutation_prob": 1.5}, "mutation_prob"),
        ({"mutation_prob": "0.2"}, "mutation_prob must be a number, got '0.2'"),
        ({"generations": 0}, "generations"),
        ({"batch_size": 0}, "batch_size"),
        # generations=2.5 ran 3 generations; batch_size=2.5 failed scoring with a TypeError
        ({"generations": 2.5}, "generations must be an integer, got 2.5"),
        ({"generations": True}, "generations must be an integer, got True"),
        ({"batch_size": 2.5}, "batch_size must be an integer, got 2.5"),
        ({"param_budget": -1}, "param_budget must be >= 0"),
        ({"param_budget": 0}, "param_budget=0"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        search(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"param_budget": 100, "popsize": 20}, r"unknown search settings \['popsize'\]; known: \["),
        ({"population": 20}, "evolutionary_search needs a param_budget"),
        ({"param_budget": 100, "generations": 2.5}, "generations must be an integer, got 2.5"),
    ],
)
def test_check_settings_refuses_settings_the_search_does_not_take(kwargs, match):
    # keyword settings (e.g. a config's fields): a misspelt or missing one is named, not ignored
    with pytest.raises(ValueError, match=match):
        check_settings(**kwargs)


class FlatGenesSpace(FakeSpace):
    """Genes of one axis (layers x tensors flattened): not the search's (layers, tensors)."""

    def to_genes(self, cfg):
        genes = super().to_genes(cfg)
        return genes.reshape(*genes.shape[:-2], -1)


class ShortMutantSpace(FakeSpace):
    """Mutants one layer short."""

    def mutate(self, rng, genes, prob):
        return super().mutate(rng, genes, prob)[:-1]


@pytest.mark.parametrize(
    ("space", "match"),
    [
        (FlatGenesSpace(), r"space.to_genes must return \(layers, tensors\) genes, got \(40,\)"),
        (ShortMutantSpace(), r"space returned genes of shape \(7, 5\), expected \(8, 5\)"),
    ],
    ids=["flat_genes", "short_mutants"],
)
def test_a_space_whose_genes_are_not_layers_by_tensors_is_refused(space, match):
    with pytest.raises(ValueError, match=match):
        evolutionary_search(
            space, matches_target, param_budget=TARGET_BUDGET, generations=2, progress=False
        )


def test_check_settings_with_a_space_refuses_a_budget_as_the_searchs_generation_0_would():
    # run before training, it must fail exactly when (and as) the search would after it
    def error(fn: Any) -> str | None:
        try:
            fn()
        except ValueError as e:
            return str(e)
        return None

    outcomes = []
    for budget in (0, 150, 300, 450, TARGET_BUDGET):
        knobs = {"param_budget": budget, "seed": 4, "population": 20, "top_k": 4, "max_tries": 40}
        searched = error(lambda knobs=knobs: search(generations=1, **knobs))
        checked = error(lambda knobs=knobs: check_settings(space=SPACE, generations=1, **knobs))
        assert checked == searched, budget
        outcomes.append(checked)
    assert outcomes[0] is not None and "fit param_budget=0" in outcomes[0]
    assert outcomes[-1] is None
    assert check_settings(param_budget=0) is None  # without a space, settings alone


@pytest.mark.parametrize(
    ("budget", "match"),
    [
        # every config fits: the space (one bias-free layer, rank 1: 4 x 4 configs) is too small
        (10**6, r"only 16 of 20 .* \(0 tries were over it, 234 repeated a config drawn before\)"),
        (0, r"only 1 of 20 .*param_budget=0 \(2\d\d tries were over it, \d+ repeated a config"),
    ],
)
def test_a_generation_0_that_cannot_be_filled_says_whether_the_budget_or_the_space_is_short(
    budget, match
):
    # It advised raising the budget or max_tries even where every config fit the budget.
    space = GLoRASpace((1,), (LayerSpec("fc", (), 4, 4, has_bias=False),))
    with pytest.raises(ValueError, match=match):
        check_settings(space=space, param_budget=budget, population=20, top_k=4)


@pytest.mark.parametrize(
    ("score_fn", "match"),
    [
        (lambda cfgs: np.zeros(3), "one value per config"),
        (lambda cfgs: np.full(len(cfgs["A"]), np.nan), "non-finite"),
        (lambda cfgs: np.full(len(cfgs["A"]), np.inf), "non-finite"),
        (lambda cfgs: -np.full(len(cfgs["A"]), np.inf), "non-finite"),
    ],
)
def test_bad_scores_raise(score_fn, match):
    with pytest.raises(ValueError, match=match):
        search(score_fn, generations=1)


def test_result_json_is_readable(tmp_path, target_result):
    path = tmp_path / "out" / "best.json"
    save_result_json(target_result, SPACE, path)
    record = json.loads(path.read_text())
    assert record["config"] == SPACE.decode(target_result.best_cfg)
    assert record["config"][LAYERS[0][0]]["A"] in OPTIONS["A"]
    assert record["num_params"] == cost_of(target_result.best_genes)
    assert record["search"]["candidates_evaluated"] == 1000
    assert record["search"]["generations"] == 20
    assert record["score"] == target_result.best_score
    assert record["param_budget"] == TARGET_BUDGET
    assert len(record["history"]) == 20


def test_plots_write_pngs(tmp_path, target_result):
    paths = [
        search_plots.plot_score_vs_params(target_result, tmp_path / "scatter.png"),
        search_plots.plot_search_progress(target_result, tmp_path / "progress.png"),
        search_plots.plot_layer_config(SPACE, target_result.best_cfg, tmp_path / "grid.png"),
        search_plots.plot_params_per_layer_type(
            SPACE, target_result.best_cfg, tmp_path / "types.png"
        ),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 5000


def brute_force_front(num_params: np.ndarray, scores: np.ndarray) -> list[int]:
    """Candidates that every candidate of as many params or fewer scores below (an equal one
    scored earlier wins), by params."""
    front = [
        i
        for i in range(len(scores))
        if all(
            scores[j] < scores[i]
            or (scores[j] == scores[i] and j > i and num_params[j] == num_params[i])
            for j in range(len(scores))
            if j != i and num_params[j] <= num_params[i]
        )
    ]
    return sorted(front, key=lambda i: (num_params[i], i))


@pytest.mark.parametrize("seed", range(4))
def test_pareto_front_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_params = rng.integers(0, 12, size=40)  # many ties in params and in scores
    scores = rng.integers(0, 6, size=40) / 5
    front = search_plots.pareto_front(num_params, scores)
    assert front.tolist() == brute_force_front(num_params, scores)
    assert np.all(np.diff(num_params[front]) > 0) and np.all(np.diff(scores[front]) > 0)


def test_pareto_front_of_a_search_holds_its_best(target_result) -> None:
    r = target_result
    front = search_plots.pareto_front(r.evaluated_num_params, r.evaluated_scores)
    assert r.evaluated_scores[front[-1]] == r.best_score  # the best score at the fewest params
    assert r.evaluated_num_params[front[-1]] <= r.best_num_params


@pytest.mark.parametrize(
    ("params", "scores"), [([1, 2], [0.5]), ([], []), ([[1, 2]], [[0.1, 0.2]])]
)
def test_pareto_front_refuses_mismatched_or_empty_input(params, scores) -> None:
    with pytest.raises(ValueError, match="one score per candidate"):
        search_plots.pareto_front(np.array(params), np.array(scores))


def test_the_search_bar_written_to_a_log_is_drawn_at_its_start_and_end(capsys) -> None:
    """stderr no terminal (a CI log keeps every redraw): generations of 0.15 s each (past
    tqdm's 0.1 s terminal redraw interval) draw the bar at the start and at the end only."""

    def slow_score(cfgs):
        time.sleep(0.15)
        return matches_target(cfgs)

    kwargs = {"population": 8, "top_k": 2, "num_mutations": 4, "num_crossovers": 4}
    search(slow_score, generations=5, progress=True, **kwargs)
    bar = capsys.readouterr().err
    assert bar.count("\r") <= 2 and "5/5" in bar


def test_progress_plot_draws_each_generation(tmp_path, monkeypatch) -> None:
    figures = []
    monkeypatch.setattr(
        search_plots, "Figure", lambda **kw: figures.append(Figure(**kw)) or figures[-1]
    )
    result = search(seed=1, generations=3)
    search_plots.plot_search_progress(result, tmp_path / "progress.png")
    best, top_k = figures[0].axes[0].get_lines()
    np.testing.assert_array_equal(best.get_xdata(), [0, 1, 2])
    np.testing.assert_array_equal(best.get_ydata(), [h.best_score for h in result.history])
    np.testing.assert_array_equal(top_k.get_ydata(), [h.mean_top_k_score for h in result.history])
    assert figures[0].axes[0].get_title().startswith("Search progress: 150 candidates in ")
    with pytest.raises(ValueError, match="no generations"):
        search_plots.plot_search_progress(
            dataclasses.replace(result, history=[]), tmp_path / "none.png"
        )


@pytest.mark.parametrize("generations", [1, 3])
def test_score_plot_colours_whole_generations_from_zero(tmp_path, monkeypatch, generations):
    figures = []
    monkeypatch.setattr(
        search_plots, "Figure", lambda **kw: figures.append(Figure(**kw)) or figures[-1]
    )
    result = search(seed=1, generations=generations)
    search_plots.plot_score_vs_params(result, tmp_path / "scatter.png")
    colorbar = figures[0].axes[1]
    low, high = colorbar.get_ylim()
    ticks = [t for t in colorbar.get_yticks() if low <= t <= high]
    assert (low, high) == (0, max(1, generations - 1))
    assert ticks and all(float(t).is_integer() for t in ticks)
    (step,) = [line for line in figures[0].axes[0].get_lines() if line.get_drawstyle() != "default"]
    front = search_plots.pareto_front(result.evaluated_num_params, result.evaluated_scores)
    np.testing.assert_array_equal(
        step.get_xdata(), [*result.evaluated_num_params[front], result.param_budget]
    )
    # the front's best score (the search's) runs on to the budget line
    np.testing.assert_array_equal(
        step.get_ydata(), [*result.evaluated_scores[front], result.evaluated_scores.max()]
    )


def test_tensor_params_match_cost_table():
    genes = target_genes(9)
    expected = np.array(
        [[SPACE.cost[i, j, genes[i, j]] for j in range(5)] for i in range(len(LAYERS))]
    )
    got = search_plots.tensor_params(SPACE, SPACE.from_genes(genes))
    np.testing.assert_array_equal(got, expected)
    by_type = search_plots.params_by_layer_type(SPACE, SPACE.from_genes(genes))
    assert list(by_type) == ["attention qkv", "attention proj", "mlp fc1", "mlp fc2"]
    for k, kind in enumerate(by_type):  # LAYERS cycles qkv, proj, fc1, fc2 in each block
        np.testing.assert_array_equal(by_type[kind], expected[k::4].sum(0))


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("Transformer/encoderblock_0/MultiHeadDotProductAttention_0/qkv", "attention qkv"),
        ("Transformer/encoderblock/MultiHeadDotProductAttention_0/query[3]", "attention qkv"),
        ("Transformer/encoderblock_2/MultiHeadDotProductAttention_0/out", "attention proj"),
        ("Transformer/encoderblock/MlpBlock_0/Dense_0[11]", "mlp fc1"),
        ("Transformer/encoderblock_1/MlpBlock_0/Dense_1", "mlp fc2"),
        ("blocks.3.attn.qkv", "attention qkv"),
        ("blocks.3.attn.proj", "attention proj"),
        ("blocks.3.mlp.fc1", "mlp fc1"),
        ("blocks.3.mlp_fc2", "mlp fc2"),
        ("head", "other"),
        # a name part must match whole
        ("blocks.3.mlp.fc10", "other"),
        ("Transformer/encoderblock_1/MlpBlock_0/Dense_10", "other"),
        ("encoder/monkey_gate", "other"),
        ("blocks.3.attn.projector", "other"),
    ],
)
def test_layer_type_of_vit_names(name, kind):
    assert search_plots.layer_type(name) == kind


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("block3/depthwise_conv", "depthwise conv"),
        ("block3/expand_conv", "expand / pw1"),
        ("block3/project_conv", "project / pw2"),
        ("stem_conv", "stem / head conv"),
        ("head_conv", "stem / head conv"),
        ("stage1_block2/dwconv", "depthwise conv"),
        ("stage1_block2/pwconv1", "expand / pw1"),
        ("stage1_block2/pwconv2", "project / pw2"),
        ("head", "other"),
        ("stage1_block2/pwconv10", "other"),
    ],
)
def test_layer_type_of_convnet_names(name, kind):
    assert search_plots.layer_type(name, search_plots.CONV_LAYER_TYPES) == kind


@pytest.mark.parametrize(
    ("option", "kind"),
    [
        ("lora_8", "lora"),
        ("vector", "vector"),
        ("scalar", "scalar"),
        ("constant", "scalar"),
        ("none", "none"),
    ],
)
def test_option_kind(option, kind):
    assert search_plots.option_kind(option) == kind


def test_option_kind_rejects_unknown():
    with pytest.raises(ValueError, match="unknown GLoRA option 'matrix'"):
        search_plots.option_kind("matrix")


def test_search_on_a_real_glora_space(tmp_path):
    """A scanned 2-block toy ViT (q/k/v fused, fc2 without bias) through glora(...).space."""
    from glora_jax import glora
    from peft_core import unflatten
    from peft_core.targets import SCANNED

    block = "Transformer/encoderblock"
    shapes = {
        **{
            f"MultiHeadDotProductAttention_0/{n}/kernel": (2, 8, 2, 4)
            for n in ("query", "key", "value")
        },
        **{
            f"MultiHeadDotProductAttention_0/{n}/bias": (2, 2, 4) for n in ("query", "key", "value")
        },
        "MultiHeadDotProductAttention_0/out/kernel": (2, 2, 4, 8),
        "MultiHeadDotProductAttention_0/out/bias": (2, 8),
        "MlpBlock_0/Dense_0/kernel": (2, 8, 16),
        "MlpBlock_0/Dense_0/bias": (2, 16),
        "MlpBlock_0/Dense_1/kernel": (2, 16, 8),
    }
    params = unflatten({f"{block}/{k}": np.zeros(s, np.float32) for k, s in shapes.items()})
    space = glora((2,), stacked=SCANNED).space(params)
    fans = {"qkv": (8, 24), "out": (8, 8), "Dense_0": (8, 16), "Dense_1": (16, 8)}

    def readable_cost(readable) -> int:
        total = 0
        for name, choice in readable.items():
            fan_in, fan_out = fans[name.split("/")[-1].split("[")[0]]
            total += sum(option_cost(t, o, fan_in, fan_out) for t, o in choice.items())
        return total

    target = space.to_genes(space.sample(jax.random.key(3)))
    budget = readable_cost(space.decode(space.from_genes(target))) + 20

    def score(cfgs):
        return (space.to_genes(cfgs) == target).sum(axis=(-2, -1)).astype(np.float64)

    r = evolutionary_search(
        space,
        score,
        param_budget=budget,
        population=20,
        top_k=5,
        num_mutations=10,
        num_crossovers=10,
        generations=6,
        progress=False,
    )
    chex.assert_shape(r.evaluated_genes, (r.candidates_evaluated, 8, 5))
    costs = [readable_cost(space.decode(space.from_genes(g))) for g in r.evaluated_genes]
    np.testing.assert_array_equal(r.evaluated_num_params, costs)
    assert max(costs) <= budget
    assert r.best_score > r.evaluated_scores[r.evaluated_generation == 0].max()
    readable = space.decode(r.best_cfg)
    assert set(readable) == {
        f"{block}/{n}[{i}]"
        for n in (
            "MultiHeadDotProductAttention_0/qkv",
            "MultiHeadDotProductAttention_0/out",
            "MlpBlock_0/Dense_0",
            "MlpBlock_0/Dense_1",
        )
        for i in range(2)
    }
    assert all(
        readable[f"{block}/MlpBlock_0/Dense_1[{i}]"][t] == "none" for i in (0, 1) for t in "CDE"
    )
    by_type = search_plots.params_by_layer_type(space, r.best_cfg)
    assert sum(int(v.sum()) for v in by_type.values()) == r.best_num_params
    assert search_plots.plot_layer_config(space, r.best_cfg, tmp_path / "grid.png").exists()


def test_layer_grid_reads_in_forward_order():
    from glora_jax.search_plots import _block_order

    names = [
        "T/encoderblock/MlpBlock_0/Dense_0[1]", "T/encoderblock/MlpBlock_0/Dense_0[0]",
        "T/encoderblock/MultiHeadDotProductAttention_0/qkv[0]",
        "T/encoderblock_10/MlpBlock_0/Dense_1", "T/encoderblock_2/MlpBlock_0/Dense_1",
        "T/encoderblock_2/MultiHeadDotProductAttention_0/out",
        "T/encoderblock_2/MultiHeadDotProductAttention_0/query",
    ]  # fmt: skip
    assert sorted(names, key=_block_order) == [
        "T/encoderblock/MultiHeadDotProductAttention_0/qkv[0]",
        "T/encoderblock/MlpBlock_0/Dense_0[0]", "T/encoderblock/MlpBlock_0/Dense_0[1]",
        "T/encoderblock_2/MultiHeadDotProductAttention_0/query",
        "T/encoderblock_2/MultiHeadDotProductAttention_0/out",
        "T/encoderblock_2/MlpBlock_0/Dense_1", "T/encoderblock_10/MlpBlock_0/Dense_1",
    ]  # fmt: skip
    # a ConvNeXt's stages, and Flax's names for a list of modules: numbers compared as numbers
    stages = ["m/stage1_block0/pw", "m/stage0_block2/pw", "m/stage0_block10/pw"]
    assert sorted(stages, key=_block_order) == [stages[1], stages[2], stages[0]]
    layers = ["m/layers_10/Dense_0", "m/layers_2/Dense_1", "m/layers_2/Dense_0", "m/head_3"]
    assert sorted(layers, key=_block_order) == [layers[2], layers[1], layers[0], layers[3]]
    # EfficientNet: the stem, each block's expand, depthwise and project convs, the head conv
    efficientnet = [
        "head_conv",
        "block1/project_conv",
        "block1/expand_conv",
        "stem_conv",
        "block0/project_conv",
        "block1/depthwise_conv",
        "block0/depthwise_conv",
    ]
    assert sorted(efficientnet, key=_block_order) == [
        "stem_conv",
        "block0/depthwise_conv",
        "block0/project_conv",
        "block1/expand_conv",
        "block1/depthwise_conv",
        "block1/project_conv",
        "head_conv",
    ]
    convnext = ["stage0_block1/pwconv1", "stage0_block1/pwconv2", "stage0_block1/dwconv"]
    assert sorted(convnext, key=_block_order) == [convnext[2], convnext[0], convnext[1]]


def test_a_space_that_cannot_be_searched_is_named():
    with pytest.raises(TypeError, match="a dict has no to_genes, from_genes, sample, mutate"):
        evolutionary_search({}, lambda cfgs: np.zeros(1), param_budget=100)


#: The parameters of _combined_space's LoRA: rank 2 on a (16, 8) kernel.
LORA_PROJ = 48


def _combined_space() -> tuple[Any, Any]:
    """(CombinedSpace, params): GLoRA of rank 2 on "attn", of ranks 4 and 2 on "mlp", LoRA on
    "proj" (no space)."""
    params = {
        "attn": {"kernel": jnp.ones((8, 8)), "bias": jnp.zeros(8)},
        "mlp": {"kernel": jnp.ones((8, 16)), "bias": jnp.zeros(16)},
        "proj": {"kernel": jnp.ones((16, 8))},
    }
    combined = peft_core.combine(
        glora_jax.glora(2, targets="attn/kernel", fuse=None),
        glora_jax.glora((4, 2), targets="mlp/kernel", fuse=None),
        peft_core.lora(2, targets="proj/kernel"),
    )
    return combined.space(params), params


def test_a_combined_space_stacks_its_spaces_genes():
    space, _ = _combined_space()
    attn, mlp, lora = space.spaces
    assert lora is None
    cfg = space.sample(jax.random.key(0), (3,))
    genes = space.to_genes(cfg)
    chex.assert_shape(genes, (3, 2, 5))  # one slice per GLoRA layer, A..E
    np.testing.assert_array_equal(genes[:, :1], attn.to_genes(cfg[0]))
    np.testing.assert_array_equal(genes[:, 1:], mlp.to_genes(cfg[1]))
    back = space.from_genes(genes)
    assert back[2] is None
    chex.assert_trees_all_equal(back[:2], jax.tree.map(np.asarray, cfg[:2]))
    assert space.fixed_params == LORA_PROJ == 2 * (16 + 8)  # the LoRA trains in every subnet
    np.testing.assert_array_equal(
        space.num_params(cfg), attn.num_params(cfg[0]) + mlp.num_params(cfg[1]) + LORA_PROJ
    )
    rng = np.random.default_rng(0)
    mutated = space.mutate(rng, genes, 1.0)
    space.from_genes(mutated)  # each space's rows stay legal in that space
    assert not np.array_equal(mutated, genes)
    child = space.crossover(rng, genes, mutated)
    assert np.all((child == genes) | (child == mutated))
    one = jax.tree.map(lambda x: x[0], cfg[:2]) + (None,)
    assert space.decode(one) == [attn.decode(one[0]), mlp.decode(one[1]), None]


def test_a_combined_space_refuses_bad_genes_and_mixed_widths():
    space, _ = _combined_space()
    with pytest.raises(ValueError, match=r"2 rows \(1, 1, 0 per adapter\), got shape \(3, 5\)"):
        space.from_genes(np.zeros((3, 5), np.int32))
    with pytest.raises(ValueError, match="a combined cfg is a tuple of 3 configs"):
        space.to_genes(space.sample(jax.random.key(0))[:2])
    with_fake = peft_core.adapter.CombinedSpace((space.spaces[0], SPACE))  # genes 5 and 5 wide
    assert with_fake.to_genes(with_fake.sample(jax.random.key(1))).shape == (1 + len(LAYERS), 5)
    # the same text for equal spaces (a search checkpoint's fingerprint), not an address
    assert repr(with_fake) == repr(peft_core.adapter.CombinedSpace((space.spaces[0], FakeSpace())))
    with pytest.raises(ValueError, match="none of the combined adapters has a search space"):
        peft_core.adapter.CombinedSpace((None,)).from_genes(np.zeros((1, 5)))

    class Narrow(FakeSpace):
        def to_genes(self, cfg):
            return super().to_genes(cfg)[..., :3]

    with pytest.raises(ValueError, match=r"genes of different widths \[3, 5\]"):
        peft_core.adapter.CombinedSpace((space.spaces[0], Narrow())).from_genes(np.zeros((9, 5)))


def test_search_on_a_combined_space(tmp_path):
    """GLoRA on two layer groups (different ranks) and LoRA, searched as one; resumable."""
    space, _ = _combined_space()
    target = space.to_genes(space.sample(jax.random.key(3)))
    budget = int(space.num_params(space.from_genes(target))) + 10

    def score(cfgs):
        return (space.to_genes(cfgs) == target).sum(axis=(-2, -1)).astype(np.float64)

    settings = dict(param_budget=budget, population=12, top_k=4, num_mutations=6,
                    num_crossovers=6, progress=False,
                    checkpoint_dir=tmp_path / "search")  # fmt: skip
    first = evolutionary_search(space, score, generations=2, **settings)
    r = evolutionary_search(space, score, generations=4, **settings)  # resumes after 2
    assert r.candidates_evaluated > first.candidates_evaluated
    assert_same_search(r, evolutionary_search(space, score, generations=4, **{
        **settings, "checkpoint_dir": None
    }))  # fmt: skip
    # every candidate's cost, from each part's own count and the LoRA's, within the budget
    parts = space.spaces
    costs = [
        sum(int(s.num_params(c)) for s, c in zip(parts, space.from_genes(g), strict=True) if s)
        + LORA_PROJ
        for g in r.evaluated_genes
    ]
    np.testing.assert_array_equal(r.evaluated_num_params, costs)
    assert max(costs) <= budget
    assert r.best_cfg[2] is None and r.best_score == max(r.evaluated_scores)
    save_result_json(r, space, tmp_path / "subnet.json")
    saved = json.loads((tmp_path / "subnet.json").read_text())
    assert saved["config"][2] is None and saved["config"][:2] == space.decode(r.best_cfg)[:2]


def test_an_unreadable_search_state_is_named_and_a_resume_logged(tmp_path, caplog):
    search(generations=1, seed=3, checkpoint_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="glora_jax.evolution"):
        search(generations=2, seed=3, checkpoint_dir=tmp_path)
    assert any("resuming the search after generation 1 from" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    state = tmp_path / "evolution_state.npz"
    state.write_bytes(state.read_bytes()[:100])  # torn (a copy cut short, a full disk)
    with pytest.raises(ValueError, match=r"evolution_state.npz is not a readable search state "
                       r"\(BadZipFile: .*\); delete it to start the search over"):  # fmt: skip
        search(generations=3, seed=3, checkpoint_dir=tmp_path)


def test_an_interrupted_write_of_the_search_files_keeps_the_old_one(tmp_path):
    """subnet.json, the plots and the search state go through peft_core.atomic_files.replacing:
    a kill or an error mid-write leaves the previous file whole and no temporary file."""
    path = tmp_path / "subnet.json"
    with replacing(path) as partial:
        partial.write_bytes(b'{"old": 1}')

    with pytest.raises(KeyboardInterrupt), replacing(path) as partial:
        partial.write_bytes(b'{"ne')
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["subnet.json"]
    assert path.read_text() == '{"old": 1}'


def test_a_write_of_subnet_json_interrupted_by_a_kill_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "subnet.json"
    save_result_json(search(generations=1, seed=3), SPACE, path)
    old = path.read_bytes()

    def interrupted(self: Any, text: str, *args: Any, **kwargs: Any) -> int:
        with open(self, "w") as f:
            f.write(text[:5])
        raise KeyboardInterrupt

    shorter = search(generations=2, seed=3)
    monkeypatch.setattr(pathlib.Path, "write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_result_json(shorter, SPACE, path)
    assert [p.name for p in tmp_path.iterdir()] == ["subnet.json"]
    assert path.read_bytes() == old


def _interrupted_savez(f: Any, **arrays: Any) -> None:
    """np.savez killed halfway: half an archive written, then the interrupt."""
    f.write(b"PK\x03\x04 half an archive")
    raise KeyboardInterrupt


def test_a_search_killed_while_saving_its_state_resumes_from_the_one_before(tmp_path, monkeypatch):
    """Killed mid-write of generation 2's state: generation 1's stays whole, and the search
    resumed from it ends as the uninterrupted one."""
    search(generations=2, seed=7, checkpoint_dir=tmp_path)

    with monkeypatch.context() as patch:
        patch.setattr(np, "savez", _interrupted_savez)
        with pytest.raises(KeyboardInterrupt):
            search(generations=4, seed=7, checkpoint_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["evolution_state.npz"]
    resumed = search(generations=4, seed=7, checkpoint_dir=tmp_path)
    assert_same_search(resumed, search(generations=4, seed=7))


#: A budget every config fits: each tensor at its costliest option.
ALL_LEGAL = int(SPACE.cost.max(-1).sum())


class TenSecondClock:
    """``time`` for glora_jax.evolution: each perf_counter reading is 10 s after the last."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 10.0
        return self.now


def test_search_seconds_run_on_over_a_resume(tmp_path, monkeypatch):
    """``seconds`` is the wall time since the search began, the part before a resume included,
    so it grows from generation to generation across the resume; a result's seconds are its
    last generation's, a shorter one read from a longer state included. The clock reads 10 s
    later at every look, so every generation takes time."""
    monkeypatch.setattr(glora_jax.evolution, "time", TenSecondClock())
    search(generations=2, seed=2, checkpoint_dir=tmp_path)
    monkeypatch.setattr(glora_jax.evolution, "time", TenSecondClock())  # a new process
    resumed = search(generations=4, seed=2, checkpoint_dir=tmp_path)
    seconds = [h.seconds for h in resumed.history]
    assert np.all(np.diff(seconds) > 0), seconds
    assert resumed.seconds == seconds[-1]
    shorter = search(generations=3, seed=2, checkpoint_dir=tmp_path)
    assert shorter.seconds == shorter.history[-1].seconds == seconds[2]


class CountingMutations(FakeSpace):
    def __init__(self) -> None:
        super().__init__()
        self.mutations = 0

    def mutate(self, rng, genes, prob):
        self.mutations += 1
        return super().mutate(rng, genes, prob)


@pytest.mark.parametrize("max_tries", [50, 60, 74])
def test_an_operator_makes_at_most_max_tries_proposals_a_generation(max_tries):
    """mutation_prob=0: every child is its parent, seen before, so mutation spends exactly its
    max_tries proposals in generation 1 (chunks of 25, the last cut short) and the random fill
    makes the whole generation."""
    space = CountingMutations()
    r = evolutionary_search(
        space, matches_target, param_budget=ALL_LEGAL, generations=2, population=50,
        num_mutations=25, num_crossovers=0, mutation_prob=0.0, max_tries=max_tries,
        progress=False,
    )  # fmt: skip
    assert space.mutations == max_tries
    np.testing.assert_array_equal(np.bincount(r.evaluated_generation), [50, 50])


def test_a_state_that_did_not_record_its_space_is_refused(tmp_path):
    search(generations=1, seed=2, checkpoint_dir=tmp_path)
    state = tmp_path / "evolution_state.npz"
    with np.load(state) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["meta"]))
    del meta["settings"]["space"]  # as an older glora_jax wrote it
    arrays["meta"] = np.asarray(json.dumps(meta))
    np.savez(state, **arrays)
    with pytest.raises(ValueError, match="a version of glora_jax that did not record the space"):
        search(generations=2, seed=2, checkpoint_dir=tmp_path)


@pytest.mark.parametrize(
    "kwargs", [{"population": 10, "top_k": 10}, {"population": 20, "max_tries": 20}]
)
def test_settings_at_their_bounds_are_accepted(kwargs):
    """population == top_k and max_tries == population are legal (the rules say >=)."""
    check_settings(param_budget=ALL_LEGAL, **kwargs)
    r = search(generations=2, param_budget=ALL_LEGAL, num_mutations=5, num_crossovers=5, **kwargs)
    assert r.candidates_evaluated == 2 * kwargs["population"]


@pytest.mark.parametrize(
    ("names", "short"),
    [
        (["T/block_0/qkv", "T/block_0/out"], ["qkv", "out"]),
        (["T/block_0/qkv", "T/block_1/qkv"], ["block_0/qkv", "block_1/qkv"]),
        (["T/block_0/qkv", "T/head"], ["block_0/qkv", "head"]),
        (["T/block_0/qkv"], ["qkv"]),  # one layer: its own name stays
        (["qkv", "out"], ["qkv", "out"]),
    ],
)
def test_grid_labels_drop_the_prefix_all_layers_share(names, short):
    assert search_plots._short_names(names) == short


@pytest.mark.parametrize("knobs", [{"top_k": 3.0}, {"seed": 1.0}, {"batch_size": 7.0}])
def test_integral_float_counts_search_as_their_ints(knobs):
    # Integral floats pass the settings check as counts; the search once sliced its top-k by
    # top_k=3.0 itself (a TypeError after generation 0) and seeded numpy with seed=1.0.
    check_settings(param_budget=TARGET_BUDGET, **knobs)  # accepted
    ints = {k: int(v) for k, v in knobs.items()}
    assert_same_search(
        search(generations=2, **{"seed": 1, **knobs}), search(generations=2, **{"seed": 1, **ints})
    )


def saved_meta(folder: pathlib.Path) -> dict[str, Any]:
    """The "meta" record of the search state saved in ``folder``."""
    with np.load(folder / "evolution_state.npz") as data:
        return json.loads(str(data["meta"]))


def without_data_fingerprint(folder: pathlib.Path) -> None:
    """Rewrite the search state in ``folder`` as a version that recorded no data wrote it."""
    state = folder / "evolution_state.npz"
    with np.load(state) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["meta"]))
    del meta["data_fingerprint"]
    arrays["meta"] = np.asarray(json.dumps(meta))
    np.savez(state, **arrays)


@pytest.mark.parametrize("generations", [1, 3, 5])  # shorter, as long, longer than the saved
def test_a_resume_on_other_data_is_refused_and_on_the_same_data_goes_on(
    tmp_path, caplog, generations
):
    """The search state recorded no name of the data its candidates were scored on: a resume
    whose score_fn scored other data ranked the saved scores with the new ones. Its
    data_fingerprint is saved and compared (also by check_settings, which reads only); the same
    fingerprint resumes as before."""
    search(generations=3, seed=8, checkpoint_dir=tmp_path, data_fingerprint="val:aa")
    assert saved_meta(tmp_path)["data_fingerprint"] == "val:aa"
    saved = (tmp_path / "evolution_state.npz").read_bytes()

    def unused(cfgs):
        raise AssertionError("a refused resume scored a candidate")

    refused = re.escape(
        f"search state in {tmp_path / 'evolution_state.npz'} scored its candidates on other data "
        "(data_fingerprint saved 'val:aa', now 'val:bb'): resuming would rank scores of two data "
        "sets together; use another checkpoint_dir, or the data it was scored on, or delete "
    )
    kwargs = {"generations": generations, "seed": 8, "checkpoint_dir": tmp_path}
    with pytest.raises(DataMismatchError, match=refused):
        search(unused, **kwargs, data_fingerprint="val:bb")
    knobs = {"param_budget": TARGET_BUDGET, "seed": 8, "generations": generations}
    with pytest.raises(ValueError, match=refused):
        check_settings(**knobs, space=SPACE, checkpoint_dir=tmp_path, data_fingerprint="val:bb")
    assert (tmp_path / "evolution_state.npz").read_bytes() == saved
    check_settings(**knobs, space=SPACE, checkpoint_dir=tmp_path, data_fingerprint="val:aa")
    with caplog.at_level(logging.WARNING, logger="glora_jax.evolution"):
        resumed = search(**kwargs, data_fingerprint="val:aa")
    assert "records no data fingerprint" not in caplog.text  # it records one
    assert_same_search(resumed, search(generations=generations, seed=8))
    # None compares nothing and keeps the fingerprint saved, which still refuses other data
    search(**kwargs | {"generations": 6})
    assert saved_meta(tmp_path)["data_fingerprint"] == "val:aa"
    with pytest.raises(ValueError, match=refused):
        search(unused, **kwargs | {"generations": 7}, data_fingerprint="val:bb")


def test_a_state_without_a_data_fingerprint_resumes_with_a_warning_then_records_it(
    tmp_path, caplog
):
    """A search state of a version without data fingerprints is resumed as before (nothing
    tells what its candidates were scored on), with a warning, and its next generation
    records the fingerprint, which is compared from then on."""
    search(generations=2, seed=9, checkpoint_dir=tmp_path)
    without_data_fingerprint(tmp_path)
    knobs = {"param_budget": TARGET_BUDGET, "seed": 9}
    with caplog.at_level(logging.WARNING, logger="glora_jax.evolution"):
        check_settings(**knobs, space=SPACE, checkpoint_dir=tmp_path, data_fingerprint="val:aa")
    assert not caplog.records  # check_settings only reads: the search warns when it resumes
    with caplog.at_level(logging.WARNING, logger="glora_jax.evolution"):
        resumed = search(generations=3, seed=9, checkpoint_dir=tmp_path, data_fingerprint="val:aa")
    assert_same_search(resumed, search(generations=3, seed=9))
    assert "records no data fingerprint (saved by an older version, or without one)" in (
        caplog.text
    )
    assert saved_meta(tmp_path)["data_fingerprint"] == "val:aa"
    with pytest.raises(ValueError, match="scored its candidates on other data"):
        search(generations=4, seed=9, checkpoint_dir=tmp_path, data_fingerprint="val:bb")


def test_a_search_killed_before_its_first_state_starts_anew_on_any_data(tmp_path, monkeypatch):
    """The fingerprint is saved in the state file itself, whole or not at all: a search killed
    while writing its first state leaves nothing that refuses the next one, and one killed
    while writing a later state leaves the one before with its fingerprint."""

    with monkeypatch.context() as patch:
        patch.setattr(np, "savez", _interrupted_savez)
        with pytest.raises(KeyboardInterrupt):
            search(generations=2, seed=7, checkpoint_dir=tmp_path, data_fingerprint="val:aa")
    assert list(tmp_path.iterdir()) == []
    search(generations=1, seed=7, checkpoint_dir=tmp_path, data_fingerprint="val:bb")
    with monkeypatch.context() as patch:
        patch.setattr(np, "savez", _interrupted_savez)
        with pytest.raises(KeyboardInterrupt):
            search(generations=2, seed=7, checkpoint_dir=tmp_path, data_fingerprint="val:bb")
    assert saved_meta(tmp_path)["data_fingerprint"] == "val:bb"
    resumed = search(generations=2, seed=7, checkpoint_dir=tmp_path, data_fingerprint="val:bb")
    assert_same_search(resumed, search(generations=2, seed=7))


@pytest.mark.parametrize("fingerprint", [12, b"val", ("val", "aa")])
def test_a_data_fingerprint_other_than_a_string_is_refused(tmp_path, fingerprint):
    """It is saved as JSON and compared as read back: a tuple would read back as a list."""
    with pytest.raises(ValueError, match="data_fingerprint must be a string or None, got"):
        search(generations=1, checkpoint_dir=tmp_path, data_fingerprint=fingerprint)
    with pytest.raises(ValueError, match="data_fingerprint must be a string or None, got"):
        check_settings(param_budget=TARGET_BUDGET, data_fingerprint=fingerprint)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("folder", ["empty", "absent"])
def test_check_settings_takes_a_checkpoint_dir_without_a_state(tmp_path, folder):
    """A new search (no state saved yet: a fresh workdir) has nothing to compare."""
    checkpoint_dir = tmp_path if folder == "empty" else tmp_path / "search"
    check_settings(param_budget=TARGET_BUDGET, space=SPACE, checkpoint_dir=checkpoint_dir,
                   data_fingerprint="val:aa")  # fmt: skip
    assert list(tmp_path.iterdir()) == []  # it only reads


def test_check_settings_needs_the_space_to_read_a_saved_state(tmp_path):
    with pytest.raises(ValueError, match="needs the space to check a checkpoint_dir's state"):
        check_settings(param_budget=TARGET_BUDGET, checkpoint_dir=tmp_path)
