"""The offline suite's plan: which runs, in which order, with which ``ExperimentConfig``.

Studies (see ``SuiteSettings``):
- ``main``: every offline task x every method on DINOv2 ViT-S/14 (VTAB-1k style splits);
- ``conv``: FLoRA's convolution claim, methods on EfficientNet-Lite0;
- ``fewshot``: k-shot training sets of one task (val200 and test unchanged).

Learning rate (the only tuned knob, the same grid for every method): each *group* (study, task,
backbone, method, shots) first runs every lr at seed 0 (phase 1); once they are all finished the
lr with the best val200 accuracy is chosen (``choose_lr``; none where every one failed) and the
other seeds run at it (phase 2). GLoRA picks its lr on the first budget; its other budgets search
the same supernet (same lr and seed), whose checkpoint the executor copies. Few-shot groups take
the lr chosen for the same method on the full train800 set of the same task (no separate grid).
"""

from __future__ import annotations

import argparse
import dataclasses
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.config import ExperimentConfig, override
from experiments.data.offline import check_offline_task
from experiments.methods import check_knobs

Results = Mapping[str, Mapping[str, Any]]
#: (study, task, backbone, method, shots): runs that share one lr choice.
Group = tuple[str, str, str, str, int | None]


@dataclasses.dataclass(frozen=True)
class SuiteSettings:
    """Everything the suite varies; the same epochs / schedule / lr grid for every method."""

    tasks: tuple[str, ...] = ("fashion_mnist", "mnist5k", "digits")
    methods: tuple[str, ...] = ("linear", "full", "bitfit", "lora", "flora", "glora")
    conv_tasks: tuple[str, ...] = ("fashion_mnist",)
    conv_methods: tuple[str, ...] = ("linear", "full", "bitfit", "lora", "flora")
    fewshot_task: str = "fashion_mnist"
    shots: tuple[int, ...] = (1, 2, 4, 8, 16)
    fewshot_methods: tuple[str, ...] = ("linear", "lora", "flora", "glora")
    learning_rates: tuple[float, ...] = (1e-4, 5e-4, 1e-3)
    seeds: tuple[int, ...] = (0, 1, 2)
    budgets: tuple[int, ...] = (450_000, 660_000)
    glora_space: str = "large"
    image_size: int = 112
    epochs: int = 30
    warmup_epochs: float = 3.0
    batch_size: int = 64
    split_seed: int = 0
    test_limit: int | None = None
    population: int = 20
    top_k: int = 5
    num_mutations: int = 10
    num_crossovers: int = 10
    generations: int = 5

    def __post_init__(self) -> None:
        if not self.learning_rates or not self.seeds or not self.budgets:
            raise ValueError("learning_rates, seeds and budgets must each hold at least one value")
        for name in ("tasks", "methods", "conv_tasks", "conv_methods", "shots", "fewshot_methods",
                     "learning_rates", "seeds", "budgets"):  # fmt: skip
            values = getattr(self, name)
            if len(set(values)) < len(values):
                raise ValueError(f"{name} holds a value twice (one run, two rows): {values}")
        for task in dict.fromkeys((*self.tasks, *self.conv_tasks, self.fewshot_task)):
            check_offline_task(task)  # the suite packs offline tasks only
        if min(self.budgets) < 1:
            raise ValueError(f"budgets (GLoRA's parameter budgets) must be >= 1: {self.budgets}")
        if self.seeds[0] != 0:
            raise ValueError(
                f"the lr is chosen at seed 0, so seeds must start with 0: {self.seeds}"
            )
        orphans = sorted(set(self.fewshot_methods) - set(self.methods))
        if self.shots and self.fewshot_methods and (self.fewshot_task not in self.tasks or orphans):
            raise ValueError(
                f"few-shot runs take the lr chosen for their method on fewshot_task "
                f"{self.fewshot_task!r} in the main study: it must be one of tasks {self.tasks} "
                f"and fewshot_methods one of methods {self.methods} (not {orphans}), or set "
                "shots=() for no few-shot study"
            )


@dataclasses.dataclass(frozen=True)
class Run:
    """One pipeline run. budget: GLoRA's search budget; shots: None for train800."""

    study: str
    task: str
    backbone: str
    method: str
    lr: float
    seed: int
    shots: int | None = None
    budget: int | None = None

    @property
    def run_id(self) -> str:
        """Unique, filesystem-safe name, e.g. ``main-digits-dinov2-s14-lora-lr0.001-s0``."""
        parts = [self.study, self.task, self.backbone, self.method]
        if self.budget is not None:
            parts.append(f"b{self.budget}")
        if self.shots is not None:
            parts.append(f"{self.shots}shot")
        parts += [f"lr{self.lr:g}", f"s{self.seed}"]
        return "-".join(parts)


@dataclasses.dataclass(frozen=True)
class Assets:
    """Inputs: ``root`` holds what travels (task packs, float16 weights), ``derived`` what
    ``prepare`` makes from it (few-shot packs, float32 weights) next to the runs."""

    root: Path
    derived: Path

    def pack(self, task: str, shots: int | None = None) -> Path:
        if shots is None:
            return self.root / "data" / f"{task}.npz"
        return self.derived / "data" / f"{task}-{shots}shot.npz"

    def weights(self, backbone: str) -> Path:
        """float32 npz the loader reads (``{backbone}.npz``)."""
        return self.derived / "weights" / f"{backbone}.npz"

    def half_weights(self, backbone: str) -> Path:
        """float16 copy that travels (``{backbone}.f16.npz``)."""
        return self.root / "weights" / f"{backbone}.f16.npz"


BACKBONE_OF_STUDY = {"main": "dinov2-s14", "fewshot": "dinov2-s14", "conv": "efficientnet-lite0"}


def val_accuracy(result: Mapping[str, Any]) -> float:
    """The val200 accuracy a run is judged by: the searched subnet's for GLoRA, else the
    trained model's (``val_accuracy_supernet_mean`` is that model's accuracy without a supernet);
    -inf for a failed run."""
    if "failed" in result:
        return float("-inf")
    search = result.get("search") or {}
    if "val_accuracy" in search:
        return float(search["val_accuracy"])
    return float(result["val_accuracy_supernet_mean"])


def phase_one(settings: SuiteSettings, group: Group) -> list[Run]:
    """The lr grid at seed 0 of ``group`` (GLoRA: at the first budget)."""
    study, task, backbone, method, shots = group
    budget = settings.budgets[0] if method == "glora" else None
    return [
        Run(study, task, backbone, method, lr, 0, shots=shots, budget=budget)
        for lr in settings.learning_rates
    ]


def lr_group(group: Group) -> Group:
    """The group whose lr grid chooses ``group``'s lr: few-shot groups take the main study's."""
    study, task, backbone, method, _ = group
    return ("main", task, backbone, method, None) if study == "fewshot" else group


def grid_unfinished(settings: SuiteSettings, group: Group, results: Results) -> bool:
    """Whether a phase-1 run that chooses ``group``'s lr has no result (nor failure) yet."""
    return any(run.run_id not in results for run in phase_one(settings, lr_group(group)))


def choose_lr(settings: SuiteSettings, group: Group, results: Results) -> float | None:
    """The lr of ``group`` with the best val200 accuracy at seed 0 (ties: the smaller lr), or
    None while a phase-1 run is unfinished or when every one failed (no lr has a val200
    accuracy). Few-shot groups reuse the main study's."""
    if grid_unfinished(settings, group, results):
        return None
    runs = phase_one(settings, lr_group(group))
    best = max(runs, key=lambda run: (val_accuracy(results[run.run_id]), -run.lr))
    return None if "failed" in results[best.run_id] else best.lr


def groups(settings: SuiteSettings) -> list[Group]:
    """Every group, in priority order: main, conv, few-shot."""
    main = [
        ("main", t, BACKBONE_OF_STUDY["main"], m, None)
        for t in settings.tasks
        for m in settings.methods
    ]
    conv = [
        ("conv", t, BACKBONE_OF_STUDY["conv"], m, None)
        for t in settings.conv_tasks
        for m in settings.conv_methods
    ]
    fewshot = [
        ("fewshot", settings.fewshot_task, BACKBONE_OF_STUDY["fewshot"], m, k)
        for k in settings.shots
        for m in settings.fewshot_methods
    ]
    return [*main, *conv, *fewshot]  # type: ignore[list-item]  # fmt: skip


def plan(settings: SuiteSettings, results: Results) -> list[Run]:
    """Every run whose lr is known by now, without duplicates, in priority order: every lr grid
    (phase 1), then the seeds of each group once ``choose_lr`` has an answer."""
    planned: dict[str, Run] = {}
    for group in groups(settings):
        if group[0] != "fewshot":
            for run in phase_one(settings, group):
                planned.setdefault(run.run_id, run)
    for group in groups(settings):
        lr = choose_lr(settings, group, results)
        if lr is None:
            continue
        for budget in arm_budgets(settings, group):
            for seed in settings.seeds:
                run = Run(*group[:4], lr, seed, shots=group[4], budget=budget)  # type: ignore[misc]
                planned.setdefault(run.run_id, run)
    return list(planned.values())


def arm_budgets(settings: SuiteSettings, group: Group) -> tuple[int | None, ...]:
    """The rows of a group: GLoRA's budgets (few-shot: the first only), else one row."""
    if group[3] != "glora":
        return (None,)
    return settings.budgets[:1] if group[0] == "fewshot" else settings.budgets


def waiting_groups(settings: SuiteSettings, results: Results) -> list[Group]:
    """Groups whose lr is not chosen yet as their lr grid is unfinished (their seed runs are
    not planned yet); a grid whose every run failed chooses none and waits for nothing."""
    return [g for g in groups(settings) if grid_unfinished(settings, g, results)]


def supernet_source(settings: SuiteSettings, run: Run) -> Run | None:
    """For a GLoRA run at a later budget: the first-budget run that trains the same supernet."""
    if run.method != "glora" or run.budget == settings.budgets[0]:
        return None
    return dataclasses.replace(run, budget=settings.budgets[0])


def in_part(run: Run, part: tuple[int, int]) -> bool:
    """Whether ``run`` belongs to part ``(i, n)`` (1-based i): a stable hash of its id."""
    index, count = part
    return zlib.crc32(run.run_id.encode()) % count == index - 1


def parse_part(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 1 <= i <= n (argparse's type: the error's message is shown)."""
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or not 1 <= int(index) <= int(count):
        raise argparse.ArgumentTypeError(f"expected i/n with 1 <= i <= n, got {text!r}")
    return int(index), int(count)


def overrides(run: Run, settings: SuiteSettings, assets: Assets, cache_dir: Path) -> list[str]:
    """The dotted overrides that turn the default ``ExperimentConfig`` into ``run``'s config."""
    items = [
        f"data.task={assets.pack(run.task, run.shots)}",
        "data.source=npz",
        f"data.split_seed={settings.split_seed}",
        f"data.cache_dir={cache_dir}",
        f"data.test_limit={settings.test_limit}",
        f"backbone.name={run.backbone}",
        f"backbone.checkpoint={assets.weights(run.backbone)}",
        f"backbone.image_size={settings.image_size}",
        f"backbone.scan={run.backbone != 'efficientnet-lite0'}",
        f"method.name={run.method}",
        *([f"method.space={settings.glora_space}"] if run.method == "glora" else []),
        f"train.optim.learning_rate={run.lr!r}",
        f"train.optim.warmup_epochs={settings.warmup_epochs!r}",
        f"train.epochs={settings.epochs}",
        f"train.batch_size={settings.batch_size}",
        f"train.seed={run.seed}",
        "train.checkpoint_every=0",
        "train.log_every=25",
    ]
    if run.budget is not None:
        items += [
            f"search.param_budget={run.budget}",
            f"search.population={settings.population}",
            f"search.top_k={settings.top_k}",
            f"search.num_mutations={settings.num_mutations}",
            f"search.num_crossovers={settings.num_crossovers}",
            f"search.generations={settings.generations}",
        ]
    return items


def every_run(settings: SuiteSettings) -> list[Run]:
    """Every run the plan may come to hold, whichever lr each group chooses."""
    runs: dict[str, Run] = {}
    for group in groups(settings):
        for lr in settings.learning_rates:
            for budget in arm_budgets(settings, group):
                for seed in settings.seeds:
                    run = Run(*group[:4], lr, seed, shots=group[4], budget=budget)  # type: ignore[misc]
                    runs.setdefault(run.run_id, run)
    return list(runs.values())


def check_configs(settings: SuiteSettings, assets: Assets, cache_dir: Path) -> None:
    """ValueError naming the first run of ``every_run`` whose ``run_config`` fails (e.g. a
    learning rate <= 0, an unknown method or GLoRA space): refused before any run starts, not
    by the worker that would come to it (whose part would stop there)."""
    for run in every_run(settings):
        try:
            run_config(run, settings, assets, cache_dir)
        except ValueError as error:
            raise ValueError(
                f"these settings give run {run.run_id} a bad config: {error}"
            ) from error


def run_config(
    run: Run, settings: SuiteSettings, assets: Assets, cache_dir: Path
) -> ExperimentConfig:
    items = overrides(run, settings, assets, cache_dir)
    # the method knobs set must be ones the run's method reads, as the CLI requires
    check_knobs(
        run.method, [i.split("=")[0][len("method.") :] for i in items if i.startswith("method.")]
    )
    config: ExperimentConfig = override(ExperimentConfig(), items)
    return config
