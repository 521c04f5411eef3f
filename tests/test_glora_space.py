"""GLoRASpace: options, legality, sampling, parameter counts, readable configs, genes, presets."""

from __future__ import annotations

import collections
import functools
import logging

import chex
import jax
import numpy as np
import pytest

import glora_jax
from glora_jax import GLoRASpace, presets
from glora_jax.space import LayerSpec
from peft_core.adapter import CombinedSpace

TENSORS = "ABCDE"

# fan_in, fan_out chosen so that every count below is distinct and easy to check by hand.
LAYERS = (
    LayerSpec("l1", (), 6, 5, True),
    LayerSpec("nb", (), 4, 7, False),
    LayerSpec("st", (2,), 5, 3, True),
)


@functools.cache
def _space(ranks=(3, 2)) -> GLoRASpace:
    return GLoRASpace(ranks, LAYERS)


@functools.cache
def _jit_sample(batch_shape):
    return jax.jit(lambda key: _space().sample(key, batch_shape))


def _none() -> dict[str, str]:
    return dict.fromkeys(TENSORS, "none")


# ---- options and legality --------------------------------------------------------------------


def test_option_names_per_tensor():
    assert GLoRASpace((8, 4), (LayerSpec("x", (), 16, 16, True),)).options == {
        "A": ("lora_8", "lora_4", "vector", "scalar", "none"),
        "B": ("lora_8", "lora_4", "vector", "scalar", "none"),
        "C": ("lora_8", "lora_4", "vector", "none"),
        "D": ("vector", "scalar", "none"),
        "E": ("vector", "scalar", "none"),
    }
    assert GLoRASpace((2,), LAYERS[:1]).options["C"] == ("lora_2", "vector", "none")


def test_layers_without_bias_only_adapt_the_weight():
    space = _space()
    assert space.legal("nb")["C"] == space.legal("nb")["D"] == space.legal("nb")["E"] == ("none",)
    assert space.legal("nb")["A"] == space.options["A"]
    assert space.legal("l1") == space.options
    np.testing.assert_array_equal(
        space.legal_mask["nb"],
        [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 1, 0], [0, 0, 1, 0, 0], [0, 0, 1, 0, 0]],
    )
    # 5 * 5 * 4 * 3 * 3 = 900 subnets per layer with a bias at two ranks (432 at one rank).
    assert np.prod(space.legal_mask["l1"].sum(1)) == 900
    assert np.prod(GLoRASpace((2,), LAYERS[:1]).legal_mask["l1"].sum(1)) == 432


def test_slice_names_and_genes():
    space = _space()
    assert space.slice_names == ("l1", "nb", "st[0]", "st[1]")
    assert space.num_genes == 4
    two_axes = LayerSpec("s2", (2, 3), 5, 5, True).slice_names()
    assert two_axes[:2] == ["s2[0,0]", "s2[0,1]"] and two_axes[-1] == "s2[1,2]"


# ---- parameter counts ------------------------------------------------------------------------

HAND_READABLE = {
    # l1: fan_in 6, fan_out 5: A lora_3 3*(6+5)=33, B vector 5, C lora_2 2*6+2=14, D scalar 1
    "l1": {"A": "lora_3", "B": "vector", "C": "lora_2", "D": "scalar", "E": "none"},
    # nb: fan_in 4, fan_out 7: A scalar 1, B lora_2 2*(4+7)=22
    "nb": {"A": "scalar", "B": "lora_2", "C": "none", "D": "none", "E": "none"},
    # st[0]: fan_in 5, fan_out 3: C vector 5, D vector 3, E vector 3
    "st[0]": {"A": "none", "B": "none", "C": "vector", "D": "vector", "E": "vector"},
    # st[1]: A vector 3, B scalar 1, D scalar 1, E scalar 1
    "st[1]": {"A": "vector", "B": "scalar", "C": "none", "D": "scalar", "E": "scalar"},
}
HAND_COUNT = (33 + 5 + 14 + 1) + (1 + 22) + (5 + 3 + 3) + (3 + 1 + 1 + 1)


def test_num_params_hand_count():
    space = _space()
    assert int(space.num_params(space.encode(HAND_READABLE))) == HAND_COUNT == 93


def test_max_params_hand_count():
    space = _space()
    # l1: A, B 3*(6+5) each, C max(3*6+3, 6) = 21, D, E 5 each
    # nb: A, B 3*(4+7) each; st (per slice): A, B 3*(5+3) each, C 3*5+3, D, E 3 each
    want = (33 + 33 + 21 + 5 + 5) + (33 + 33) + 2 * (24 + 24 + 18 + 3 + 3)
    assert space.max_params == want == 307
    largest = {"A": "lora_3", "B": "lora_3", "C": "lora_3", "D": "vector", "E": "vector"}
    assert int(space.num_params(space.fixed(largest, fallback_none=True))) == want


def test_a_space_whose_counts_overflow_int32_is_refused():
    """num_params counts in int32 (jit without x64): a larger space's counts wrapped around
    to negative numbers that every budget admitted."""
    wide = 2**20  # per slice A, B: 8 * 2 * wide each, C 8 * wide + 8, D, E: wide each
    fits = GLoRASpace((8,), (LayerSpec("big", (40,), wide, wide, True),))
    assert fits.max_params == 40 * (8 * 5 * wide + 8 + 2 * wide) < 2**31
    with pytest.raises(ValueError, match=r"largest subnet trains 4,404,020,000 parameters"):
        GLoRASpace((8,), (LayerSpec("big", (100,), wide, wide, True),))


@pytest.mark.parametrize("fixed", [0, 2**30])
def test_combined_spaces_whose_summed_counts_overflow_int32_are_refused(fixed):
    """Each space fits int32 but their sum (plus the scalars of adapters without a space) does
    not: the combination's num_params summed int32 counts that wrapped around to negatives."""
    wide = 2**20
    big = GLoRASpace((8,), (LayerSpec("big", (20 if fixed else 30,), wide, wide, True),))
    assert big.max_params + fixed < 2**31 <= 2 * big.max_params + fixed
    alone = CombinedSpace((big, None), fixed_params=fixed)
    largest = {"A": "lora_8", "B": "lora_8", "C": "lora_8", "D": "vector", "E": "vector"}
    assert int(alone.num_params((big.fixed(largest), None))) == big.max_params + fixed
    with pytest.raises(ValueError, match=f"largest subnet trains {2 * big.max_params + fixed:,} "):
        CombinedSpace((big, None, big), fixed_params=fixed)


@pytest.mark.parametrize("fixed", [0, 2**30])
def test_nested_combined_spaces_whose_summed_counts_overflow_int32_are_refused(fixed):
    """combine(combine(glora, lora), glora): the inner CombinedSpace stated no max_params, so
    the outer one counted it as 0 and admitted a largest subnet past int32 (-1,652,555,296)."""
    wide = 2**20
    big = GLoRASpace((8,), (LayerSpec("big", (20 if fixed else 30,), wide, wide, True),))
    inner = CombinedSpace((big, None), fixed_params=fixed)
    with pytest.raises(ValueError, match=f"largest subnet trains {2 * big.max_params + fixed:,} "):
        CombinedSpace((inner, big))
    assert inner.max_params == big.max_params + fixed < 2**31


@pytest.mark.parametrize("spaces", [(), (None,)])
def test_a_combination_of_int32s_largest_count_is_admitted_and_one_more_refused(spaces):
    """2**31 - 1 is an int32 count; 2**31 would wrap around to -2**31."""
    top = int(np.iinfo(np.int32).max)
    assert CombinedSpace(spaces, fixed_params=top).max_params == top
    with pytest.raises(ValueError, match=f"largest subnet trains {top + 1:,} parameters"):
        CombinedSpace(spaces, fixed_params=top + 1)


def test_num_params_keeps_batch_axes_and_jits_and_vmaps():
    space = _space()
    cfgs = jax.tree.map(np.asarray, _jit_sample((3, 4))(jax.random.key(0)))
    counts = jax.jit(space.num_params)(cfgs)
    chex.assert_shape(counts, (3, 4))
    fans = {"l1": (6, 5), "nb": (4, 7), "st[0]": (5, 3), "st[1]": (5, 3)}
    by_hand = [
        [
            sum(_hand_cost(c, *fans[k]) for k, c in space.decode(_at(cfgs, i, j)).items())
            for j in range(4)
        ]
        for i in range(3)
    ]
    np.testing.assert_array_equal(counts, by_hand)
    np.testing.assert_array_equal(jax.vmap(jax.vmap(space.num_params))(cfgs), by_hand)
    assert len(set(np.ravel(by_hand))) > 6, "samples should differ in size"
    # numpy configs (the search's genes) are counted in numpy, with no device op to compile
    on_host = space.num_params(cfgs)
    assert type(on_host) is np.ndarray and on_host.dtype == np.int32
    np.testing.assert_array_equal(on_host, by_hand)


def _at(tree, *index):
    return jax.tree.map(lambda x: x[index], tree)


def _hand_cost(choice: dict[str, str], fan_in: int, fan_out: int) -> int:
    total = 0
    for t, o in choice.items():
        if o.startswith("lora_"):
            r = int(o[5:])
            total += r * fan_in + r if t == "C" else r * (fan_in + fan_out)
        elif o == "vector":
            total += fan_in if t == "C" else fan_out
        elif o == "scalar":
            total += 1
    return total


# ---- sampling --------------------------------------------------------------------------------


def test_sample_shapes_and_dtype():
    space = _space()
    cfg = space.sample(jax.random.key(0))
    assert {k: (v.shape, v.dtype) for k, v in cfg.items()} == {
        "l1": ((5,), np.int32),
        "nb": ((5,), np.int32),
        "st": ((2, 5), np.int32),
    }
    assert space.check(cfg) == ()


def test_sample_is_legal_and_covers_every_legal_option_uniformly():
    space = _space()
    n = 3000
    genes = space.to_genes(_jit_sample((n,))(jax.random.key(1)))  # checks legality too
    for g, name in enumerate(space.slice_names):
        layer = name.split("[")[0]
        for i, t in enumerate(TENSORS):
            counts = collections.Counter(genes[:, g, i].tolist())
            legal = [space.options[t].index(o) for o in space.legal(layer)[t]]
            assert sorted(counts) == legal, (name, t)
            freq = np.array([counts[k] for k in legal]) / n
            np.testing.assert_allclose(freq, 1 / len(legal), atol=0.04, err_msg=f"{name} {t}")
    # slices of a stacked layer and layers draw independently
    assert (genes[:, 2] != genes[:, 3]).any(axis=-1).mean() > 0.9


def test_sample_under_jit_matches_eager_and_depends_on_the_key():
    space = _space()
    eager = space.sample(jax.random.key(3), (3, 4))
    chex.assert_trees_all_equal(_jit_sample((3, 4))(jax.random.key(3)), eager)
    other = _jit_sample((3, 4))(jax.random.key(4))
    assert any((np.asarray(eager[k]) != np.asarray(other[k])).any() for k in eager)


def test_sample_compiles_once_per_batch_shape_for_every_space_of_one_layout(caplog):
    """The trainer, the search and its checks each build a space of one model: their draws
    share one compile per batch shape (shapes no other test draws, so the cache starts cold)."""
    spaces = [GLoRASpace((3, 2), LAYERS) for _ in range(3)]
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG):
        draws = [
            (space.sample(jax.random.key(seed), (13, 3)), space.sample(jax.random.key(seed), 17))
            for seed, space in enumerate(spaces)
        ]
    compiles = [r for r in caplog.records if "Compiling jit(_draw)" in r.getMessage()]
    assert len(compiles) == 2
    chex.assert_trees_all_equal(draws[0][0], _space().sample(jax.random.key(0), (13, 3)))
    first, second = draws[0][1], draws[1][1]  # other keys, other draws
    assert any((np.asarray(first[k]) != np.asarray(second[k])).any() for k in first)


# ---- readable configs ------------------------------------------------------------------------


def test_encode_decode_round_trip():
    space = _space()
    cfg = space.encode(HAND_READABLE)
    np.testing.assert_array_equal(cfg["st"], [[4, 4, 2, 0, 0], [2, 3, 3, 1, 1]])
    assert space.decode(cfg) == HAND_READABLE
    sampled = jax.tree.map(np.asarray, _jit_sample((3, 4))(jax.random.key(5)))
    for k in range(4):
        one = _at(sampled, 0, k)
        chex.assert_trees_all_equal(space.encode(space.decode(one)), one)


def test_fixed_and_presets():
    space = _space()
    ssf = space.decode(space.fixed(presets.ssf(), fallback_none=True))
    assert ssf["l1"] == ssf["st[1]"] == {**_none(), "A": "vector", "E": "vector"}
    assert ssf["nb"] == {**_none(), "A": "vector"}
    bitfit = space.decode(space.fixed(presets.bitfit(), fallback_none=True))
    assert bitfit["nb"] == _none() and bitfit["st[0]"] == {**_none(), "E": "vector"}
    lora = space.decode(space.fixed(presets.lora_only(2)))
    assert all(c == {**_none(), "B": "lora_2"} for c in lora.values())
    # bitfit trains exactly the biases; ssf adds one scale per output channel
    bias_sizes = 5 + 3 + 3
    assert int(space.num_params(space.fixed(presets.bitfit(), fallback_none=True))) == bias_sizes
    ssf_count = int(space.num_params(space.fixed(presets.ssf(), fallback_none=True)))
    assert ssf_count == bias_sizes + (5 + 7 + 3 + 3)


def test_preset_space_sizes_follow_the_paper():
    assert presets.ranks("large") == (8, 4)
    assert presets.ranks("medium") == (4, 2)
    assert presets.ranks("small") == (2,)
    with pytest.raises(ValueError, match="unknown GLoRA space size"):
        presets.ranks("huge")  # type: ignore[arg-type]


# ---- genes -----------------------------------------------------------------------------------


def test_genes_round_trip_with_batch_axes():
    space = _space()
    cfgs = jax.tree.map(np.asarray, _jit_sample((3, 4))(jax.random.key(6)))
    genes = space.to_genes(cfgs)
    assert genes.shape == (3, 4, 4, 5) and genes.dtype == np.int32
    chex.assert_trees_all_equal(space.from_genes(genes), cfgs)
    np.testing.assert_array_equal(genes[..., 2:, :], cfgs["st"])


def test_mutate():
    space = _space()
    genes = space.to_genes(space.encode(HAND_READABLE))
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(space.mutate(rng, genes, 0.0), genes)
    batch = np.broadcast_to(genes, (4000, *genes.shape))
    all_new = space.mutate(rng, batch, 1.0)
    space.from_genes(all_new)  # legal
    # with p = 1 every entry is uniform over its legal options (the current one included)
    for g in range(4):
        for i, t in enumerate(TENSORS):
            layer = space.slice_names[g].split("[")[0]
            n_legal = len(space.legal(layer)[t])
            assert len(np.unique(all_new[:, g, i])) == n_legal
    some = space.mutate(rng, batch, 0.2)
    changed = (some != batch).mean(axis=0)
    # each entry changes with p 0.2 * (1 - 1/n_legal); entries with one legal option never do
    n_legal = np.array(
        [[len(space.legal(n.split("[")[0])[t]) for t in TENSORS] for n in space.slice_names]
    )
    np.testing.assert_allclose(changed, 0.2 * (1 - 1 / n_legal), atol=0.03)
    # ... and independently: two entries (of one slice's five or of two slices) both change
    # with the product of their probabilities, not with one of them (a coin per slice)
    flips = (some != batch).reshape(len(batch), -1)[:, n_legal.ravel() > 1].astype(float)
    p = flips.mean(axis=0)
    both = flips.T @ flips / len(batch)
    off_diagonal = ~np.eye(len(p), dtype=bool)
    np.testing.assert_allclose(both[off_diagonal], np.outer(p, p)[off_diagonal], atol=0.012)


def test_crossover():
    space = _space()
    rng = np.random.default_rng(1)
    a = space.to_genes(space.encode(HAND_READABLE))
    b = space.to_genes(space.fixed(presets.ssf(), fallback_none=True))
    kids = space.crossover(
        rng, np.broadcast_to(a, (2000, *a.shape)), np.broadcast_to(b, (2000, *b.shape))
    )
    assert ((kids == a) | (kids == b)).all()
    differ = a != b
    from_a = (kids == a)[:, differ].astype(float)
    np.testing.assert_allclose(from_a.mean(axis=0), 0.5, atol=0.05)
    # each entry its own coin: two entries both from parent a a quarter of the time
    both = from_a.T @ from_a / len(kids)
    off_diagonal = ~np.eye(len(both), dtype=bool)
    assert (differ.sum(axis=-1) >= 2).any()  # pairs within one slice too
    np.testing.assert_allclose(both[off_diagonal], 0.25, atol=0.05)


# ---- bad input -------------------------------------------------------------------------------


def _bad(readable_change):
    readable = {k: dict(v) for k, v in HAND_READABLE.items()}
    for key, value in readable_change.items():
        if value is None:
            del readable[key]
        else:
            readable[key] = value
    return readable


BAD_ENCODE = [
    ("unknown_option", {"l1": {**HAND_READABLE["l1"], "A": "matrix"}}, "unknown option A='matrix'"),
    ("rank_not_in_space", {"l1": {**HAND_READABLE["l1"], "B": "lora_8"}}, "rank 8 is not in"),
    ("lora_on_D", {"l1": {**HAND_READABLE["l1"], "D": "lora_2"}}, "D has no lora"),
    ("illegal_no_bias", {"nb": {**HAND_READABLE["nb"], "E": "vector"}}, "without a bias"),
    ("missing_layer", {"st[1]": None}, r"missing: \['st\[1\]'\]"),
    ("unknown_layer", {"st[2]": HAND_READABLE["st[0]"]}, r"unknown: \['st\[2\]'\]"),
    ("missing_tensor", {"l1": {"A": "none", "B": "none", "C": "none", "D": "none"}}, "missing"),
    ("extra_tensor", {"l1": {**HAND_READABLE["l1"], "F": "none"}}, r"unknown: \['F'\]"),
    (
        "choice_not_a_dict",
        {"l1": "none"},
        r"l1: expected a dict \{'A': option, \.\.\.\}, got 'none'",
    ),
]


@pytest.mark.parametrize("name, change, match", BAD_ENCODE, ids=[c[0] for c in BAD_ENCODE])
def test_encode_rejects(name, change, match):
    with pytest.raises(ValueError, match=match):
        _space().encode(_bad(change))


def _genes(space, good):
    return space.to_genes(good)


BAD_CALLS = [
    ("not_a_dict", lambda space, good: space.check([1, 2]), "must be a dict"),
    ("float", lambda space, good: space.check({**good, "l1": good["l1"] * 1.0}), "int array"),
    (
        "shape",
        lambda space, good: space.check({**good, "st": good["st"][0]}),
        r"cfg\['st'\] has shape \(5,\); expected \(\*batch, \*\(2, 5\)\)",
    ),
    (
        "batches",
        lambda space, good: space.check({**good, "l1": np.stack([good["l1"]] * 2)}),
        "disagree on the batch shape",
    ),
    ("illegal", lambda space, good: space.check({**good, "nb": np.zeros(5, int)}), "'nb'.*bias"),
    (
        "range",
        lambda space, good: space.check({**good, "l1": np.array([7, 0, 0, 0, 0])}),
        "'l1': option index 7 out of range for A",
    ),
    (
        "decode_batch",
        lambda space, good: space.decode(space.from_genes(np.stack([_genes(space, good)] * 2))),
        "one cfg",
    ),
    (
        "genes_shape",
        lambda space, good: space.from_genes(np.zeros((3, 5), int)),
        r"\(\*batch, 4, 5\)",
    ),
    (
        "genes_float",
        lambda space, good: space.mutate(np.random.default_rng(), np.zeros((4, 5)), 0.1),
        r"genes must be an int array \(\*batch, 4, 5\), got float64",
    ),
    (
        "genes_illegal",
        lambda space, good: space.crossover(
            np.random.default_rng(), _genes(space, good), np.zeros((4, 5), np.int32)
        ),
        "without a bias",
    ),
    (
        "crossover_shapes",
        lambda space, good: space.crossover(
            np.random.default_rng(), _genes(space, good), np.stack([_genes(space, good)] * 2)
        ),
        r"crossover parents differ in shape: \(4, 5\) vs \(2, 4, 5\)",
    ),
    ("fixed_illegal", lambda space, good: space.fixed(presets.bitfit()), "without a bias"),
    ("rank_too_big", lambda space, good: GLoRASpace((5,), LAYERS), "exceeds min"),
    ("ranks_repeated", lambda space, good: GLoRASpace((2, 2), LAYERS), "distinct"),
    ("ranks_empty", lambda space, good: GLoRASpace((), LAYERS), "non-empty"),
    (
        "ranks_float",
        lambda space, good: GLoRASpace((2.0,), LAYERS),  # type: ignore[arg-type]
        "positive ints",
    ),
    ("names_repeated", lambda space, good: GLoRASpace((2,), LAYERS[:1] * 2), "unique"),
    ("legal_unknown_layer", lambda space, good: space.legal("zz"), "no GLoRA layer"),
]


@pytest.mark.parametrize("name, call, match", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_configs_and_genes_raise(name, call, match):
    space = _space()
    with pytest.raises(ValueError, match=match):
        call(space, space.encode(HAND_READABLE))


def test_space_from_the_adapter_matches_the_params():
    rng = np.random.default_rng(0)
    params = {
        "l1": {"kernel": rng.normal(size=(6, 5)), "bias": rng.normal(size=5)},
        "nb": {"kernel": rng.normal(size=(4, 7))},
        "st": {"kernel": rng.normal(size=(2, 5, 3)), "bias": rng.normal(size=(2, 3))},
    }
    space = glora_jax.glora((3, 2), targets=r".*/kernel", stacked=r"st/.*").space(params)
    assert space.specs == LAYERS
    assert space.max_params == _space().max_params


def test_max_params_takes_each_tensors_costliest_option_whatever_the_rank_order():
    # ranks (2, 3): option 0 is lora_2, not the costliest lora_3
    space = GLoRASpace((2, 3), LAYERS)
    assert space.options["A"][:2] == ("lora_2", "lora_3")
    assert space.max_params == _space().max_params == 307


def test_an_option_index_just_past_the_widest_list_is_out_of_range():
    space = _space()
    good = space.encode(HAND_READABLE)
    width = len(space.options["A"])  # 5
    with pytest.raises(ValueError, match=f"'l1': option index {width} out of range for A"):
        space.check({**good, "l1": np.array([width, 0, 0, 0, 0])})
    with pytest.raises(ValueError, match=f"option index {width} out of range for D"):
        space.from_genes(np.where(np.arange(5) == 3, width, space.to_genes(good)))


@pytest.mark.parametrize(
    "choice, match",
    [
        ({**_none(), "A": "matrix"}, "unknown option A='matrix'"),
        ({**_none(), "E": "lora_2"}, "E has no lora option"),
        ("none", r"l1: expected a dict \{'A': option, \.\.\.\}, got 'none'"),  # was AttributeError
    ],
)
def test_fixed_fallback_none_still_refuses_unknown_options(choice, match):
    # fallback_none replaces only options that exist but are illegal on a layer (C, D, E
    # without a bias), never a typo
    with pytest.raises(ValueError, match=match):
        _space().fixed(choice, fallback_none=True)
