"""Execute the offline suite's plan: prepare the inputs once, then run a part of the plan.

A run lives in ``<runs>/<run id>/`` (the pipeline's workdir); its ``result.json`` marks it done,
so calling ``execute`` again skips it (resume). A run that raises (e.g. a non-finite training
loss) leaves ``failure.json`` instead: it counts as done with ``{"failed": message}`` and is
never chosen as the best lr; delete the file to try it again. Parts (``--part i/n``) split the
plan by a stable hash of the run id and may run in parallel processes on one GPU; a part waits
(polling) while the lr of a group it needs is being chosen from another part's runs.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments.config import ExperimentConfig, config_changes
from experiments.data import load_task
from experiments.data.folder import reading_npz_once
from experiments.pipeline import RESULT_NAME
from experiments.suite_data import few_shot_pack, full_precision_copy, pack_seed
from experiments.suite_plan import (
    Assets,
    Run,
    SuiteSettings,
    check_configs,
    groups,
    in_part,
    plan,
    run_config,
    supernet_source,
    waiting_groups,
)
from experiments.training.trainer import CHECKPOINT_DIR

log = logging.getLogger(__name__)
Runner = Callable[[ExperimentConfig, Path], dict[str, Any]]
FAILURE = "failure.json"
TRAIN_DIR = "train"


def cache_dir(runs: Path) -> Path:
    """Decoded, resized splits shared by every run (filled by ``prepare``)."""
    return runs / "cache"


def finished(runs: Path) -> dict[str, dict[str, Any]]:
    """{run id: result} of every run directory under ``runs`` with a result.json or a
    failure.json (the result wins when both exist). A file another process is still writing
    (not valid JSON yet) counts as absent."""
    found: dict[str, dict[str, Any]] = {}
    for name in (FAILURE, RESULT_NAME):
        for path in sorted(runs.glob(f"*/{name}")):
            try:
                found[path.parent.name] = json.loads(path.read_text())
            except json.JSONDecodeError:
                continue
    return found


#: Where the inputs lie (the run id names the task and backbone): a report may run elsewhere.
_PATHS = ("data.task", "data.cache_dir", "backbone.checkpoint")


def check_results_fit(
    settings: SuiteSettings, assets: Assets, runs: Path, results: dict[str, dict[str, Any]]
) -> None:
    """ValueError naming the planned runs, finished or started, whose config.json differs from
    the config these settings give them, or that have a result and no config.json to check (a
    smoke test's 2-epoch results would otherwise stand for a 30-epoch study's: a finished run is
    never run again, a started one would fail). A failed run may have failed before writing one."""
    stale = []
    for run in plan(settings, results):
        saved = runs / run.run_id / "config.json"
        result = results.get(run.run_id)
        if not saved.exists() and result is not None and "failed" not in result:
            stale.append(f"{run.run_id} (no config.json)")
        elif saved.exists():
            config = run_config(run, settings, assets, cache_dir(runs))
            changes = config_changes(json.loads(saved.read_text()), config, ignore=_PATHS)
            stale += [f"{run.run_id} ({'; '.join(changes)})"] if changes else []
    if stale:
        raise ValueError(
            f"{len(stale)} runs in {runs} were made with other settings, e.g. {stale[0]}"
            ": use another --runs folder, or the settings they were made with"
        )


def inputs(settings: SuiteSettings) -> tuple[list[str], list[tuple[str, int | None]]]:
    """(backbones, (task, shots) packs) that the planned groups read."""
    found = groups(settings)
    backbones = sorted({backbone for _, _, backbone, _, _ in found})
    packs = sorted({(task, shots) for _, task, _, _, shots in found}, key=str)
    return backbones, packs


def check_prepared(settings: SuiteSettings, assets: Assets) -> None:
    """Raise FileNotFoundError naming every weight file or pack a planned run needs and lacks,
    ValueError naming packs made for another split seed (every run would fail on them)."""
    backbones, packs = inputs(settings)
    needed = [assets.weights(b) for b in backbones] + [assets.pack(t, k) for t, k in packs]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        raise FileNotFoundError(
            f"missing inputs {missing}: run `python -m experiments.offline_suite prepare` "
            "(with the same --assets, --runs and --set options) first"
        )
    seeds = {str(p): pack_seed(p) for p in (assets.pack(t, k) for t, k in packs)}
    other = {path: seed for path, seed in seeds.items() if seed not in (None, settings.split_seed)}
    if other:
        raise ValueError(
            f"packs {other} were made for other split seeds than {settings.split_seed}: pack "
            "and prepare with the same --set split_seed as run"
        )


def prepare(settings: SuiteSettings, assets: Assets, runs: Path) -> None:
    """Derived inputs, made once before parallel parts start: float32 weights from the float16
    copies, the few-shot packs, and every split decoded at the run resolution into the cache."""
    backbones, packs = inputs(settings)
    for backbone in backbones:
        if not assets.weights(backbone).exists():
            half = assets.half_weights(backbone)
            if not half.exists():
                raise FileNotFoundError(
                    f"neither {assets.weights(backbone)} nor {half}: run "
                    "`python -m experiments.offline_suite pack` where the weights are installed"
                )
            full_precision_copy(half, assets.weights(backbone))
    for task, shots in packs:
        target = assets.pack(task, shots)
        fresh = target.exists() and pack_seed(target) == settings.split_seed
        if shots is not None and not fresh:  # derived: (re)built for this seed
            few_shot_pack(assets.pack(task), shots, target, seed=settings.split_seed)
        with reading_npz_once():
            for split in ("train800", "val200", "test"):
                load_task(
                    str(target), source="npz", split=split, image_size=settings.image_size,
                    seed=settings.split_seed, cache_dir=cache_dir(runs),
                )  # fmt: skip


def execute(
    settings: SuiteSettings,
    assets: Assets,
    runs: Path,
    *,
    part: tuple[int, int] = (1, 1),
    deadline_s: float | None = None,
    poll_s: float = 5.0,
    claims: Path | None = None,
    runner: Runner | None = None,
) -> list[str]:
    """Run this part's unfinished runs until the plan is complete; returns the ids it ran.

    Starts no run after ``deadline_s`` seconds (a started run finishes). A GLoRA run at a later
    budget waits for its first-budget run and starts from a copy of that supernet checkpoint.
    claims: a folder shared by processes that work through the same part: each run is taken by
    whoever first creates ``claims/<run id>`` (clear it before starting a new set of processes).
    """
    check_prepared(settings, assets)
    check_configs(settings, assets, cache_dir(runs))
    check_results_fit(settings, assets, runs, finished(runs))
    if runner is None:
        from experiments import pipeline  # heavy (jax, models): only when really running

        runner = pipeline.run
    started = time.monotonic()
    done: list[str] = []
    while deadline_s is None or time.monotonic() - started < deadline_s:
        results = finished(runs)
        todo = [r for r in plan(settings, results) if in_part(r, part) and r.run_id not in results]
        ready = [r for r in todo if _source_done(settings, r, results)]
        run = next((r for r in ready if _claim(claims, r)), None)
        if run is not None:
            log.info("run %s (%d left in this part)", run.run_id, len(todo) - 1)
            try:  # a config error too: a claimed run must end with a record others can see
                _copy_supernet(settings, run, runs)
                runner(run_config(run, settings, assets, cache_dir(runs)), runs / run.run_id)
            except Exception as error:  # recorded, reported, and the other runs go on
                log.exception("run %s failed", run.run_id)
                failure = {"failed": f"{type(error).__name__}: {error}"}
                partial = runs / run.run_id / f"{FAILURE}.partial"
                partial.parent.mkdir(parents=True, exist_ok=True)
                partial.write_text(json.dumps(failure, indent=2))
                partial.replace(runs / run.run_id / FAILURE)
            done.append(run.run_id)
        elif todo or waiting_groups(settings, results):
            time.sleep(poll_s)  # another part is finishing what this one needs
        else:
            break
    return done


def _claim(claims: Path | None, run: Run) -> bool:
    """Whether this process may run ``run`` (atomically creates its claim file)."""
    if claims is None:
        return True
    claims.mkdir(parents=True, exist_ok=True)
    try:
        (claims / run.run_id).open("x").close()
    except FileExistsError:
        return False
    return True


def _source_done(settings: SuiteSettings, run: Run, results: dict[str, Any]) -> bool:
    source = supernet_source(settings, run)
    return source is None or source.run_id in results


def _copy_supernet(settings: SuiteSettings, run: Run, runs: Path) -> None:
    """Seed ``run``'s workdir with its supernet source's final checkpoint (training resumes at
    the last step, i.e. does not train again), if the source's checkpoint is still there."""
    source = supernet_source(settings, run)
    if source is None:
        return
    checkpoints = runs / source.run_id / TRAIN_DIR / CHECKPOINT_DIR
    target = runs / run.run_id / TRAIN_DIR / CHECKPOINT_DIR
    if checkpoints.is_dir() and not target.exists():
        # copied beside it, then renamed: a kill mid-copy leaves no half checkpoint in target
        partial = target.with_name(f"{target.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(checkpoints, partial)
        partial.rename(target)
