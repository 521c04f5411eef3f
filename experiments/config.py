"""One experiment = one frozen ``ExperimentConfig``; presets in experiments.configs.

Any field can be overridden by a dotted path, e.g. ``train.optim.learning_rate=5e-4`` or
``backbone.name=vit-b16`` (values parsed as Python literals, else kept as strings).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import json
import os
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Union

from experiments.backbones import CONV_BACKBONES, BackboneConfig
from experiments.data.load import PATH_SOURCES, check_task_options
from experiments.methods import METHOD_KNOBS, MethodConfig
from experiments.training.checkpoint import setting_changes
from experiments.training.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """task/source/data_dir/version as ``experiments.data.load_task`` takes them; split_seed for
    the seeded sources (offline, npz, folder); cache_dir keeps decoded resized splits."""

    task: str = "fashion_mnist"
    source: str = "offline"
    data_dir: str | None = None
    version: str | None = None
    split_seed: int | None = None
    cache_dir: str | None = None
    test_limit: int | None = None

    def __post_init__(self) -> None:
        paths = ("data_dir", "cache_dir", *(("task",) if self.source in PATH_SOURCES else ()))
        for name in paths:  # bash leaves ~ in --set data.data_dir=~/x
            if getattr(self, name) is not None:
                object.__setattr__(self, name, os.path.expanduser(getattr(self, name)))
        if self.test_limit is not None and self.test_limit < 1:
            raise ValueError(f"data.test_limit must be >= 1 or None, got {self.test_limit}")
        if self.split_seed is not None and self.split_seed < 0:
            raise ValueError(f"data.split_seed must be >= 0 or None, got {self.split_seed}")
        check_task_options(
            self.task, source=self.source, data_dir=self.data_dir, version=self.version,
            seed=self.split_seed,
        )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """The GLoRA paper's evolutionary search (reference defaults); budget excludes the head.

    configs_per_call: subnets scored per vmapped eval call on val200; 10 divides the population
    (50), which is scored as one batch a generation (mutations and crossovers together), so no
    call is padded (8 scored 56 subnets a generation for 50), and is what docs/benchmarks.md's
    search rows ran.
    retrain: retrain the chosen subnet on train800val200 instead of inheriting supernet weights.
    """

    param_budget: int = 1_000_000
    population: int = 50
    top_k: int = 10
    num_mutations: int = 25
    mutation_prob: float = 0.2
    num_crossovers: int = 25
    generations: int = 20
    max_tries: int = 250
    configs_per_call: int = 10
    retrain: bool = False

    def __post_init__(self) -> None:
        if self.configs_per_call < 1:
            raise ValueError(f"search.configs_per_call must be >= 1, got {self.configs_per_call}")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    backbone: BackboneConfig = dataclasses.field(default_factory=BackboneConfig)
    method: MethodConfig = dataclasses.field(default_factory=MethodConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    search: SearchConfig = dataclasses.field(default_factory=SearchConfig)
    eval_batch_size: int = 100

    def __post_init__(self) -> None:
        if self.eval_batch_size < 1:
            raise ValueError(
                f"eval_batch_size (test and search; train.eval_batch_size is training's) must be "
                f">= 1, got {self.eval_batch_size}"
            )
        check_method_fits_backbone(self.method, self.backbone.name)


def _unread_knobs(backbone: str) -> dict[str, str]:
    """{method knob: why} of the knobs no layer ``backbone`` adapts reads: tucker where they are
    convolutions, kernel_rank where they are dense kernels."""
    if backbone in CONV_BACKBONES:
        return {"tucker": "a convolution keeps every axis as a mode anyway"}
    return {"kernel_rank": "it ranks a convolution's spatial modes"}


def unread_on_backbone(method: str, backbone: str) -> tuple[str, ...]:
    """The knobs of ``method`` ("method.<knob>") that no layer ``backbone`` adapts reads (what
    ``check_method_fits_backbone`` refuses set by hand): a dry run leaves them out, as --set
    takes them at no value."""
    return tuple(f"method.{k}" for k in _unread_knobs(backbone) if k in METHOD_KNOBS[method])


def check_method_fits_backbone(
    method: MethodConfig, backbone: str, knobs: Iterable[str] = ()
) -> None:
    """ValueError for a method knob that no layer ``backbone`` adapts reads, set off its default
    or named in ``knobs`` (the ``MethodConfig`` fields a user set, at their defaults too, as
    ``methods.check_knobs`` takes them): kernel_rank (a conv kernel's spatial modes) on a ViT,
    whose adapted layers are dense kernels, and tucker (a DenseGeneral kernel's axes as modes)
    on efficientnet-lite0, whose adapted layers are convolutions; and for a value of a knob it
    reads that cannot apply: activation-space grads (dense kernels only) on efficientnet-lite0."""
    if backbone in CONV_BACKBONES:
        kind = "convolutions"
        misfits = {
            "grads": (
                method.grads in ("activation", "pallas"),
                "activation-space gradients serve dense kernels: convolutions train in weight "
                "space",
            ),
        }
    else:
        kind = "dense kernels (the patch embedding is not adapted)"
        misfits = {}
    given = set(knobs)
    unused = misfits | {
        knob: (knob in given or getattr(method, knob) != getattr(_METHOD_DEFAULTS, knob), why)
        for knob, why in _unread_knobs(backbone).items()
    }
    for knob, (off, why) in unused.items():
        if off and knob in METHOD_KNOBS[method.name]:
            raise ValueError(
                f"method.{knob}={getattr(method, knob)!r} would be ignored: the layers "
                f"{method.name} adapts in {backbone} are {kind}, and {why}"
            )


_METHOD_DEFAULTS = MethodConfig()


class _Changes(dict[str, Any]):
    """The assignments to one nested dataclass, by field name."""


def override(config: Any, assignments: Iterable[str]) -> Any:
    """``config`` with every "a.b.c=value" applied (nested frozen dataclasses), each dataclass
    rebuilt, and so checked, once with all of its changes: their order does not matter, except
    that of a key given twice the last wins (as absl's and argparse's flags do)."""
    changes = _Changes()
    for assignment in assignments:
        path, sep, raw = assignment.partition("=")
        if not sep:
            raise ValueError(f"override {assignment!r} is not of the form key.path=value")
        _record(config, path.strip().split("."), raw.strip(), changes, full=path.strip())
    return _apply(config, changes)


def _record(node: Any, keys: list[str], text: str, changes: _Changes, *, full: str) -> None:
    """Check ``keys`` name a field of ``node`` and ``text`` its type; note it in ``changes``."""
    if not dataclasses.is_dataclass(node) or isinstance(node, type):
        raise ValueError(f"cannot set {full!r}: {type(node).__name__} has no fields")
    names = {f.name for f in dataclasses.fields(node)}
    if keys[0] not in names:
        raise ValueError(f"unknown config key {full!r}: {keys[0]!r} is not one of {sorted(names)}")
    if len(keys) > 1:
        nested = changes.setdefault(keys[0], _Changes())
        _record(getattr(node, keys[0]), keys[1:], text, nested, full=full)
    else:
        hint = typing.get_type_hints(type(node))[keys[0]]
        changes[keys[0]] = _typed(_parse(text), hint, full=full, text=text)


def _apply(node: Any, changes: _Changes) -> Any:
    values = {
        k: _apply(getattr(node, k), v) if isinstance(v, _Changes) else v for k, v in changes.items()
    }
    return dataclasses.replace(node, **values) if values else node


def _typed(value: Any, hint: Any, *, full: str, text: str | None = None) -> Any:
    """``value`` as field type ``hint`` (an int where a float is due becomes a float, a whole
    float where an int is due an int (1e6), a list a tuple, "true" / "false" in any case a bool,
    a number where a string is due the ``text`` it was parsed from: data.version=3.0 is "3.0");
    ValueError naming the key when it is not one: int, float, bool, str, None, tuples
    (``tuple[T, ...]``: every item as T; ``tuple[A, B]``: its length and each item as its
    position's type) and their unions are checked, other types (dataclasses, modules)
    refused."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else ()
    for option in options or (hint,):
        if option is type(None) and value is None:
            return None
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is int and isinstance(value, float) and value.is_integer():
            return int(value)  # search.param_budget=1e6
        if option is bool and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if option in (bool, str) and type(value) is option:
            return value
        if option is str and text is not None and isinstance(value, int | float):
            return text
        if typing.get_origin(option) is tuple and isinstance(value, list | tuple):
            items = typing.get_args(option)
            kinds = [items[0]] * len(value) if items[1:] == (Ellipsis,) else list(items)
            if len(kinds) != len(value):
                continue
            try:
                pairs = zip(value, kinds, strict=True)
                return tuple(_typed(v, kind, full=full) for v, kind in pairs)
            except ValueError:
                continue  # an item of another type: the error below quotes the whole value
    raise ValueError(f"config key {full!r} takes {_type_name(hint)}, got {value!r}")


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is not None:  # tuple[int, ...]: its __name__ is "tuple"
        return str(hint).replace("typing.", "")
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def set_values(assignments: Iterable[str]) -> dict[str, Any]:
    """{"a.b.c": value} of the "a.b.c=value" among ``assignments``, parsed and typed as
    ``override`` parses them for an ``ExperimentConfig`` (a string field takes the text:
    data.data_dir=2026 is "2026"; the last of a key wins; unknown keys and values of the wrong
    type are left as parsed, for ``override`` to refuse)."""
    values = {}
    for assignment in assignments:
        path, sep, raw = assignment.partition("=")
        if sep:
            key, text = path.strip(), raw.strip()
            values[key] = value = _parse(text)
            if (hint := _field_type(ExperimentConfig, key.split("."))) is not None:
                with contextlib.suppress(ValueError):
                    values[key] = _typed(value, hint, full=key, text=text)
    return values


def _field_type(cls: Any, keys: list[str]) -> Any:
    """The type of the field ``keys`` names in dataclass ``cls`` (nested); None for no field."""
    for key in keys:
        names = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else ()
        if key not in names:
            return None
        cls = typing.get_type_hints(cls)[key]
    return cls


def as_assignments(config: Any, prefix: str = "") -> list[str]:
    """Every field of ``config`` (nested frozen dataclasses) as an "a.b.c=value" line, the form
    ``--set`` and ``override`` take: ``override(c, as_assignments(config)) == config`` for any
    ``c`` of its type. A string is written bare unless that would parse as something else."""
    lines = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        key = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value):
            lines += as_assignments(value, f"{key}.")
        else:
            bare = isinstance(value, str) and _parse(value.strip()) == value
            lines.append(f"{key}={value if bare else repr(value)}")
    return lines


def _parse(raw: str) -> Any:
    if raw in ("None", "none", "null"):
        return None
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def as_dict(config: Any) -> dict[str, Any]:
    """JSON-ready nested dict of a config."""
    return dataclasses.asdict(config)


def config_changes(
    saved: Mapping[str, Any], config: Any, *, ignore: Iterable[str] = ()
) -> list[str]:
    """Lines "key: saved -> now" for each dotted key outside ``ignore`` in which ``config``
    differs from ``saved`` (a config as its config.json holds it). Keys ``saved`` lacks are
    options added since it was written (it ran with their defaults' behaviour): not changes."""
    return setting_changes(_dotted(saved), dotted_settings(config), ignore=ignore)


def dotted_settings(config: Any) -> dict[str, Any]:
    """{"a.b": value} of every field of ``config``, each as its config.json holds it."""
    return _dotted(json.loads(json.dumps(as_dict(config), default=str)))


def _dotted(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a.b": leaf} of a nested mapping."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat |= _dotted(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
