"""Figures of a GLoRA search: the candidates with their accuracy-vs-parameters front, the search's
progress per generation, the chosen per-layer config, its parameters by type.

Every ``plot_*`` function writes one PNG and returns its path. Figures are made without pyplot
(on the Agg canvas of ``Figure.savefig``), so importing this module leaves the user's backend
alone. The space is used through ``decode`` ({slice: {"A": option, ...}}), ``options``
({tensor: option names}), ``from_genes`` / ``to_genes`` and ``num_params``, as ``GLoRASpace``
has them."""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import EngFormatter, MaxNLocator

from glora_jax.evolution import SearchResult
from glora_jax.support import NONE, TENSORS
from peft_core.atomic_files import write_png

#: Option kinds in legend order, with their grid colours.
KIND_COLORS = {
    "lora": "#d95f02",
    "vector": "#1b9e77",
    "scalar": "#7570b3",
    "none": "#eeeeee",
}
#: Layer types of the paper's figure 3, as regexes searched in layer (slice) names: big_vision ViT
#: (MultiHeadDotProductAttention_0/qkv|out, MlpBlock_0/Dense_0|1) and timm (attn.qkv, mlp.fc1);
#: a name part must match whole (``fc1`` is not ``fc10``, ``key`` not ``monkey``).
VIT_LAYER_TYPES: dict[str, str] = {
    "attention qkv": r"(?<![A-Za-z])(?:qkv|query|key|value)(?![A-Za-z])",
    "attention proj": r"Attention[^/]*/out(?!\w)|(?<![A-Za-z])attn[./]proj(?!\w)",
    "mlp fc1": r"(?<![A-Za-z])fc1(?!\d)|Mlp[^/]*/Dense_0(?!\d)",
    "mlp fc2": r"(?<![A-Za-z])fc2(?!\d)|Mlp[^/]*/Dense_1(?!\d)",
}
#: The same for convnets: EfficientNet / MobileNet inverted bottlenecks (expand_conv,
#: depthwise_conv, project_conv, stem_conv, head_conv) and ConvNeXt (dwconv, pwconv1, pwconv2).
CONV_LAYER_TYPES: dict[str, str] = {
    "depthwise conv": r"depthwise|(?<![A-Za-z])dwconv(?!\w)",
    "expand / pw1": r"(?<![A-Za-z])expand_conv(?!\w)|(?<![A-Za-z])pwconv1(?!\w)",
    "project / pw2": r"(?<![A-Za-z])project_conv(?!\w)|(?<![A-Za-z])pwconv2(?!\w)",
    "stem / head conv": r"(?<![A-Za-z])(?:stem|head)_conv(?!\w)",
}
OTHER = "other"

PathLike = str | os.PathLike[str]


def option_kind(option: str) -> str:
    """'lora_8' -> 'lora'; 'vector', 'scalar', 'none' unchanged ('constant' -> 'scalar')."""
    if option.startswith("lora"):
        return "lora"
    kind = {"constant": "scalar"}.get(option, option)
    if kind not in KIND_COLORS:
        raise ValueError(f"unknown GLoRA option {option!r}; kinds: {list(KIND_COLORS)}")
    return kind


def plot_score_vs_params(
    result: SearchResult, path: PathLike, *, score_label: str = "val accuracy"
) -> pathlib.Path:
    """Every evaluated candidate: score vs. parameters, coloured by generation.

    Marks the front (:func:`pareto_front`, a step line: the best score at each size), the
    parameter budget (dashed line) and the chosen candidate (star).
    """
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    last = max(1, int(np.max(result.evaluated_generation)))  # a range even for one generation
    points = ax.scatter(
        result.evaluated_num_params,
        result.evaluated_scores,
        c=result.evaluated_generation,
        cmap="viridis",
        vmin=0,
        vmax=last,
        s=10,
        alpha=0.7,
    )
    fig.colorbar(points, ax=ax, label="generation", ticks=MaxNLocator(integer=True))
    front = pareto_front(result.evaluated_num_params, result.evaluated_scores)
    ax.step(
        np.append(result.evaluated_num_params[front], result.param_budget),
        np.append(result.evaluated_scores[front], result.evaluated_scores[front[-1]]),
        where="post",
        color="tab:red",
        lw=1,
        label="front: best score at each size",
    )
    ax.axvline(result.param_budget, color="black", ls="--", lw=1, label="parameter budget")
    ax.scatter(
        [result.best_num_params],
        [result.best_score],
        marker="*",
        s=250,
        color="red",
        edgecolor="black",
        zorder=3,
        label=f"chosen: {result.best_score:.4g} at {result.best_num_params:,} params",
    )
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.set_xlabel("trainable parameters (head excluded)")
    ax.set_ylabel(score_label)
    ax.set_title(f"Evolutionary search: {result.candidates_evaluated} candidates")
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def pareto_front(num_params: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices of the candidates that no other beats, by parameters ascending: each scores higher
    than every candidate of as many parameters or fewer (of equal ones, the first scored)."""
    num_params, scores = np.asarray(num_params), np.asarray(scores)
    if num_params.shape != scores.shape or num_params.ndim != 1 or not num_params.size:
        raise ValueError(
            f"need one score per candidate, got {num_params.shape} params, {scores.shape} scores"
        )
    order = np.lexsort((np.arange(scores.size), -scores, num_params))
    ordered = scores[order]
    best_before = np.concatenate([[-np.inf], np.maximum.accumulate(ordered)[:-1]])
    return order[ordered > best_before].astype(np.int64)


def plot_search_progress(
    result: SearchResult, path: PathLike, *, score_label: str = "val accuracy"
) -> pathlib.Path:
    """The best and the mean top-k score after each generation (``result.history``)."""
    history = result.history
    if not history:
        raise ValueError("the search result has no generations to plot")
    generations = [h.generation for h in history]
    fig = Figure(figsize=(6, 3.8))
    ax = fig.subplots()
    ax.plot(generations, [h.best_score for h in history], "o-", ms=3, label="best")
    ax.plot(generations, [h.mean_top_k_score for h in history], "s--", ms=3, label="mean top-k")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("generation")
    ax.set_ylabel(score_label)
    ax.set_title(
        f"Search progress: {history[-1].candidates_evaluated} candidates in "
        f"{history[-1].seconds:.0f} s"
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_layer_config(space: Any, cfg: Any, path: PathLike) -> pathlib.Path:
    """The chosen config as a grid: one row per layer slice, columns A..E (paper figure 4).

    Cell colour is the option kind (lora / vector / scalar / none), its text the option name.
    """
    readable = space.decode(cfg)
    ordered = sorted(readable, key=_block_order)
    names = _short_names(ordered)
    options = [[readable[name][t] for t in TENSORS] for name in ordered]
    kinds = list(KIND_COLORS)
    codes = np.array([[kinds.index(option_kind(o)) for o in row] for row in options])
    fig = Figure(figsize=(2.0 + 0.1 * max(map(len, names)), 1.0 + 0.24 * len(names)))
    ax = fig.subplots()
    ax.imshow(
        codes,
        cmap=ListedColormap(list(KIND_COLORS.values())),
        vmin=0,
        vmax=len(kinds) - 1,
        aspect="auto",
    )
    for i, row in enumerate(options):
        for j, option in enumerate(row):
            ax.text(j, i, option, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(TENSORS)), list(TENSORS))
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xticks(np.arange(len(TENSORS) + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(len(names) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", lw=1)
    ax.tick_params(which="minor", length=0)
    handles = [Patch(color=c, label=k) for k, c in KIND_COLORS.items()]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=8)
    return _save(fig, path)


def plot_params_per_layer_type(
    space: Any,
    cfg: Any,
    path: PathLike,
    *,
    layer_types: Mapping[str, str] = VIT_LAYER_TYPES,
) -> pathlib.Path:
    """Trainable parameters per layer type, stacked by tensor A..E (paper figure 3).

    Layer types as in ``params_by_layer_type``.
    """
    totals = params_by_layer_type(space, cfg, layer_types=layer_types)
    labels = list(totals)
    table = np.stack([totals[k] for k in labels])  # (types, 5)
    fig = Figure(figsize=(1.5 + 1.3 * len(labels), 4.5))
    ax = fig.subplots()
    bottom = np.zeros(len(labels))
    for j, tensor in enumerate(TENSORS):
        ax.bar(
            labels, table[:, j], bottom=bottom, label=tensor, color=matplotlib.colormaps["tab10"](j)
        )
        bottom += table[:, j]
    for x, total in enumerate(bottom):
        ax.text(x, total, f"{int(total):,}", ha="center", va="bottom", fontsize=8)
    ax.yaxis.set_major_formatter(EngFormatter())
    ax.set_ylabel("trainable parameters")
    ax.set_title(f"Chosen config: {int(table.sum()):,} parameters by layer type")
    ax.legend(title="tensor", fontsize=8)
    return _save(fig, path)


def params_by_layer_type(
    space: Any, cfg: Any, *, layer_types: Mapping[str, str] = VIT_LAYER_TYPES
) -> dict[str, np.ndarray]:
    """{layer type: int64 (5,) parameters of tensors A..E summed over the type's slices}.

    A slice belongs to its ``layer_type``; types without slices are left out, the order is
    that of ``layer_types``.
    """
    totals: dict[str, np.ndarray] = {}
    for name, row in zip(space.decode(cfg), tensor_params(space, cfg), strict=True):
        kind = layer_type(name, layer_types)
        totals[kind] = totals.get(kind, np.zeros(len(TENSORS), np.int64)) + row
    return {k: totals[k] for k in (*layer_types, OTHER) if k in totals}


def layer_type(name: str, layer_types: Mapping[str, str] = VIT_LAYER_TYPES) -> str:
    """The first type of ``layer_types`` whose regex ``re.search``-es ``name``, else 'other'."""
    return next((k for k, rx in layer_types.items() if re.search(rx, name)), OTHER)


def tensor_params(space: Any, cfg: Any) -> np.ndarray:
    """int64 (G, 5): parameters each (layer slice, tensor) trains in ``cfg``.

    Entry (g, t) is ``num_params(cfg)`` minus that of ``cfg`` with (g, t) set to 'none', all
    G·5 variants counted in one batched ``num_params`` call.
    """
    genes = np.asarray(space.to_genes(cfg))
    num_genes = genes.shape[0]
    variants = np.repeat(genes[None], num_genes * len(TENSORS), axis=0)
    rows, cols = np.divmod(np.arange(num_genes * len(TENSORS)), len(TENSORS))
    none_index = np.array([space.options[t].index(NONE) for t in TENSORS])
    variants[np.arange(len(rows)), rows, cols] = none_index[cols]
    total = int(space.num_params(cfg))
    without = np.asarray(space.num_params(space.from_genes(variants)), np.int64)
    return (total - without).reshape(num_genes, len(TENSORS))


def _block_order(
    name: str,
) -> tuple[tuple[bool, tuple[int, ...]], bool, bool, int, list[str | int]]:
    """Sort key: the block first (a stacked slice ``...[3]``, then the numbers of the path's
    block / layer / stage parts: ``encoderblock_3``, ``stage1_block2``, Flax's ``layers_10``;
    layers of no block before all blocks, a head (``head_conv``) after them), attention before
    the MLP and in it the out projection last, a convnet block's convs in forward order
    (EfficientNet's expand, depthwise, project; ConvNeXt's dwconv, pwconv1, pwconv2), then the
    name with its numbers compared as numbers: the grid reads in forward order, as in the paper's
    figure."""
    stacked = re.search(r"\[(\d+)", name)
    base = re.sub(r"\[\d+(,\s*\d+)*\]$", "", name)
    parts = re.findall(r"(?i)(?:block|layer|stage)s?_?(\d+)", base)
    index = ((int(stacked.group(1)),) if stacked else ()) + tuple(map(int, parts))
    last = base.rsplit("/", 1)[-1]
    head = not index and last.lower().startswith("head")
    conv = next(
        (i for i, rx in enumerate(_CONV_FORWARD) if re.search(rx, last)), len(_CONV_FORWARD)
    )
    natural = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", base)]
    return (head, index), "Attention" not in name, last == "out", conv, natural


#: A convnet block's convs in forward order, as regexes searched in a layer name's last part.
_CONV_FORWARD = (r"expand", r"depthwise|dwconv", r"pwconv1", r"project|pwconv2")


def _short_names(names: list[str]) -> list[str]:
    """Names without the '/'-separated prefix they all share."""
    parts = [n.split("/") for n in names]
    common = 0
    while all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
        common += 1
    return ["/".join(p[common:]) for p in parts]


def _save(fig: Figure, path: PathLike) -> pathlib.Path:
    """``fig`` as a PNG at ``path``, written atomically (``peft_core.atomic_files``)."""
    fig.tight_layout()
    return write_png(path, fig)
