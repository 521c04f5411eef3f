"""One task end to end: data -> backbone -> train (supernet) -> search -> test -> merge -> report.

Everything lands in ``workdir``: train/ (checkpoints, metrics.csv, TensorBoard events; with
``search.retrain`` also retrain/<digest of the chosen subnet>/), search/ (resumable state,
metrics.csv and TensorBoard events per generation: ``experiments.search_log``), subnet.json
(GLoRA's chosen config, readable, with its parameter count), merged.npz (adapter-free params
the plain backbone serves), plots/*.png, result.json.
A killed run started again with the same workdir resumes training and search where they stopped;
a workdir is refused to a config that differs from its config.json in anything but
``RESUMABLE_KEYS`` (knobs of logging, checkpoints, evaluation batches, data location, the test
limit, the search's length (a longer one goes on, a shorter one is its first generations, and
search/metrics.csv shows those until a longer one runs), retraining), the settings its method
does not read and the path of your own data (``unchecked_keys``: moved, the same examples
resume; others are refused by the digests of the examples that the training checkpoints
(train800; a retrain's, train800val200) and the search state (val200, which it scored its
candidates on) record).

result.json: test_accuracy (the adapted model as it was trained and searched, ``adapter.apply``:
GLoRA's update in a bf16 model's dtype) and merged_test_accuracy (the plain backbone on the arrays
of merged.npz, ``adapter.merge``: the update in f32; checked to agree within ``merge_tolerance``
images), val_accuracy_supernet_mean (val200 accuracy after training; for a GLoRA supernet, the mean
over a few random subnets), trainable_params (adapter scalars the chosen subnet uses, head excluded)
and head_params (every leaf train.head_pattern trains), train_seconds (summed over resumes),
train_first_step_seconds (the training step's compilation plus one step) and train_steps_per_sec
(the median rate of the log windows, which leave out each run's or resumed run's first step,
checkpoints and evaluations; None if none was logged), search (candidates_evaluated, seconds, the
chosen subnet's val_accuracy), wall_seconds, stage_seconds (wall seconds per stage of this process,
in order: data (the retrain split with it), backbone (with the checks on its params: head pattern,
the search's generation 0), train, search and retrain where they ran, test (adapted and merged),
save (merged.npz)), num_test (the test images scored), num_test_available (the task's, before
``data.test_limit``) and test_limit, devices.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from experiments.backbones import (
    CONV_BACKBONES,
    Backbone,
    check_weights,
    load_backbone,
    with_bias_grad,
)
from experiments.config import (
    ExperimentConfig,
    as_dict,
    config_changes,
    dotted_settings,
    unread_on_backbone,
)
from experiments.data import load_task
from experiments.data.base import SplitArrays
from experiments.data.folder import class_folders, reading_npz_once
from experiments.data.load import DEFAULT_SPLIT_SEED, PATH_SOURCES, check_available
from experiments.data.pipeline import TrainBatches, data_digest
from experiments.local_files import check_folder_path, local_path
from experiments.methods import Method, bias_grad_for, build_method, unread_knobs
from experiments.search_log import SearchLog
from experiments.training import TrainResult, train
from experiments.training.checkpoint import saved_steps
from experiments.training.config import TrainConfig
from experiments.training.evaluate import (
    make_config_scorer,
    make_params_accuracy_fn,
    stack_eval_batches,
)
from experiments.training.metrics import FIRST_STEP_S, latest, steady_rate
from experiments.training.partition import check_head, split_head
from experiments.training.preemption import preempted, stop
from experiments.training.sharding import check_batch_split, data_mesh, is_main_process
from experiments.training.trainer import CHECKPOINT_DIR, cfg_digest, check_resumes
from glora_jax import search_plots
from glora_jax.evolution import (
    STATE_FILE,
    DataMismatchError,
    GenerationStats,
    SearchResult,
    SearchSpace,
    check_settings,
    evolutionary_search,
    save_result_json,
)
from peft_core import adapted_paths, flatten, param_count
from peft_core.atomic_files import write_npz, write_text

log = logging.getLogger(__name__)

#: Fewer test images than this get a warning (own data just over the 1,000 that train800 and
#: val200 take leaves a handful).
FEW_TEST_IMAGES = 100

#: A task's results, in its workdir.
RESULT_NAME = "result.json"

#: Config keys a resumed run may change: they do not alter what training and search compute.
RESUMABLE_KEYS = frozenset({
    "data.data_dir", "data.cache_dir", "data.test_limit", "eval_batch_size",
    "train.log_every", "train.eval_every", "train.checkpoint_every", "train.keep_checkpoints",
    "train.eval_batch_size", "train.eval_configs", "search.configs_per_call",
    "search.generations", "search.retrain", "backbone.attention", "backbone.remat",
    "backbone.remat_policy", "backbone.bias_grad", "method.grads",
})  # fmt: skip


class StageClock:
    """Wall seconds per stage, each from the previous ``lap`` (or the clock's start) to its own."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str, outputs: Any = None) -> None:
        """End ``stage`` once the device has computed ``outputs`` (a pytree; None: now)."""
        jax.block_until_ready(outputs)
        now = time.perf_counter()
        self.seconds[stage] = now - self._last
        self._last = now


def stage_text(stage_seconds: dict[str, float]) -> str:
    """ "data 3 s, backbone 1 s, train 229 s, ...": a result's ``stage_seconds``, in order."""
    return ", ".join(f"{k} {v:.0f} s" for k, v in stage_seconds.items())


@dataclasses.dataclass(frozen=True)
class Splits:
    train: SplitArrays
    val: SplitArrays
    test: SplitArrays
    test_available: int  # the task's test images before data.test_limit
    retrain: SplitArrays | None = None  # train800val200, for a search's retrain


def load_split(config: ExperimentConfig, split: str) -> SplitArrays:
    """One uint8 split of the task at the backbone's resolution."""
    data = config.data
    return load_task(
        data.task, source=data.source, split=split, data_dir=data.data_dir,  # type: ignore[arg-type]
        image_size=config.backbone.image_size, seed=data.split_seed, version=data.version,
        cache_dir=data.cache_dir,
    )  # fmt: skip


def class_names(config: ExperimentConfig) -> list[str] | None:
    """The label -> class name map of a folder-per-class task (label i: the i-th folder by
    name), so the merged model's outputs can be named; None for other sources."""
    if config.data.source != "folder":
        return None
    return [folder.name for folder in class_folders(pathlib.Path(config.data.task))]


def load_splits(config: ExperimentConfig) -> Splits:
    """train800 / val200 / test (the first ``data.test_limit`` test images if set), and
    train800val200 when a search's retrain will need it (missing, it fails now, not after the
    training and the search)."""
    with reading_npz_once():  # an npz task's file is read once, not once per split
        loaded = {split: load_split(config, split) for split in run_splits(config)}
    test = loaded["test"]
    available, limit = len(test), config.data.test_limit
    if limit is not None and available > limit:
        log.warning(
            "testing on the first %d of the task's %d test images (data.test_limit=%d; "
            "data.test_limit=None tests on all)", limit, available, limit,
        )  # fmt: skip
        test = dataclasses.replace(test, images=test.images[:limit], labels=test.labels[:limit])
    if len(test) < FEW_TEST_IMAGES:
        log.warning(
            "the test split holds %d images: its accuracy moves in steps of %.1f points",
            len(test), 100 / len(test),
        )  # fmt: skip
    return Splits(
        loaded["train800"], loaded["val200"], test, available, retrain=loaded.get("train800val200")
    )


def run_splits(config: ExperimentConfig) -> tuple[str, ...]:
    """The splits a run of ``config`` loads, in order: test, train800, val200, and
    train800val200 when a search's retrain will need it."""
    retrain = config.method.searchable and config.search.retrain
    return ("test", "train800", "val200") + (("train800val200",) if retrain else ())


def train_on(
    config: ExperimentConfig,
    backbone: Backbone,
    method: Method,
    split: SplitArrays,
    workdir: pathlib.Path,
    *,
    cfg: Any = None,
    eval_split: SplitArrays | None = None,
) -> TrainResult:
    """Train ``method`` on ``split`` (resuming from ``workdir``); ``cfg`` fixes the subnet."""
    return train(
        train_settings(config),
        forward=backbone.forward,
        params=backbone.params,
        adapter=method.adapter,
        train_data=TrainBatches(
            split.images,
            split.labels,
            batch_size=config.train.batch_size,
            seed=config.train.seed,
            mesh=data_mesh(),
        ),  # fmt: skip
        workdir=workdir,
        eval_data=None if eval_split is None else (eval_split.images, eval_split.labels),
        cfg=cfg,
        run=checkpointed_settings(config),
    )


#: Training knobs read only for a supernet (with ``search.*``: GLoRA's alone).
SUPERNET_KEYS = ("train.num_configs", "train.eval_configs")


def supernet_only(key: str) -> bool:
    """Whether config key ``key`` is read for a GLoRA supernet alone (and its search)."""
    return key.startswith("search.") or key in SUPERNET_KEYS


def train_settings(config: ExperimentConfig) -> TrainConfig:
    """``config.train`` as training reads it: ``num_configs`` 1 but for a GLoRA supernet (the
    trainer samples no subnets for the other methods), so their checkpoints do not record, and
    a resume does not compare, a knob they ignore."""
    if config.method.searchable:
        return config.train
    return dataclasses.replace(config.train, num_configs=1)


def unread_settings(config: ExperimentConfig) -> set[str]:
    """The config keys ``config``'s method never reads: knobs of other methods, its knobs no
    layer the backbone adapts reads (``unread_on_backbone``) and, but for a GLoRA supernet, the
    supernet's and the search's settings."""
    unread = set(unread_knobs(config.method.name))
    unread |= set(unread_on_backbone(config.method.name, config.backbone.name))
    if not config.method.searchable:
        unread |= {k for k in dotted_settings(config) if supernet_only(k)}
    return unread


def unchecked_keys(config: ExperimentConfig) -> frozenset[str]:
    """Config keys a resume may change: ``RESUMABLE_KEYS``, ``unread_settings`` (an older
    quickstart's LoRA method.space changes nothing; one --set list serves every method of a
    sweep) and, for your own data (``PATH_SOURCES``), ``data.task``: its path, which may move
    (or be given relative) as ``data.data_dir`` may; what it holds is compared by the digest of
    the training examples each training checkpoint records (``check_resumes``) and of the val200
    examples the search state records (``search_data``)."""
    own_path = {"data.task"} if config.data.source in PATH_SOURCES else set()
    return RESUMABLE_KEYS | unread_settings(config) | own_path


def checkpointed_settings(config: ExperimentConfig) -> dict[str, Any]:
    """The method's and backbone's settings outside ``RESUMABLE_KEYS`` and the method's unread
    knobs, stored with each training checkpoint: a resume with another LoRA alpha, FLoRA scale or
    backbone checkpoint is refused even where no config.json says so (``check_same_experiment``)."""
    skip = unchecked_keys(config)
    return {
        k: v
        for k, v in dotted_settings(config).items()
        if k.startswith(("method.", "backbone.")) and k not in skip
    }


def merge_tolerance(num_test: int, *, rounded_update: bool = False) -> int:
    """Test images whose prediction may differ between the adapted and the merged model. Both
    compute the same function, in the same precision unless ``rounded_update``: max(1,
    num_test // 1000), since even two f32 computations of the same arrays (an eager and a
    jitted merge) differ in the last bit and a bf16 forward turns that into a flipped argmax
    on near-ties (one image of 10,000 for a random-init model on the H200, call 51). With
    ``rounded_update`` (GLoRA's ``apply`` forms its update in the model's bf16, ``merge`` in
    f32) entries differ by a bf16 rounding: max(1, num_test // 100) (2 of 797 flipped on the
    tiny digits run, tests/test_vtab_cli.py)."""
    return max(1, num_test // (100 if rounded_update else 1000))


def images_apart(adapted: float, served: float, *, num_test: int) -> int:
    """How many test images the two accuracies differ by (compared as image counts)."""
    return abs(round(served * num_test) - round(adapted * num_test))


def check_merged_agrees(
    adapted: float, served: float, *, num_test: int, rounded_update: bool = False
) -> None:
    """Raise AssertionError when the merged model's test accuracy differs from the adapted
    model's by more than ``merge_tolerance`` images (``images_apart``)."""
    differ = images_apart(adapted, served, num_test=num_test)
    tolerance = merge_tolerance(num_test, rounded_update=rounded_update)
    if differ > tolerance:
        raise AssertionError(
            f"merged model accuracy {served} != adapted accuracy {adapted}: {differ} of "
            f"{num_test} test predictions differ (tolerance {tolerance})"
        )


def same_arrays(adapted: Any, merged: Any) -> bool:
    """Whether the adapted and merged params hold the same arrays: equal dtypes and values."""
    pairs = list(zip(jax.tree.leaves(adapted), jax.tree.leaves(merged), strict=True))
    if any(a.dtype != m.dtype for a, m in pairs):
        return False
    return bool(_all_equal(adapted, merged))  # one compiled comparison, one transfer


@jax.jit
def _all_equal(a: Any, b: Any) -> jax.Array:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return jnp.all(jnp.stack([jnp.array_equal(x, y) for x, y in pairs]))


def rounds_update(adapted: Any, merged: Any) -> bool:
    """Whether the adapted params (``apply``) hold any leaf in another dtype than the merged
    ones (``merge``): GLoRA's update formed in the model's compute dtype."""
    if jax.tree.structure(adapted) != jax.tree.structure(merged):  # type: ignore[operator]
        raise ValueError(
            f"adapted and merged params differ in structure: {jax.tree.structure(adapted)} "
            f"against {jax.tree.structure(merged)}"
        )
    pairs = zip(jax.tree.leaves(adapted), jax.tree.leaves(merged), strict=True)
    return any(a.dtype != m.dtype for a, m in pairs)


def search_settings(config: ExperimentConfig) -> dict[str, Any]:
    """``evolutionary_search``'s keyword settings of ``config`` (its search, the train seed)."""
    s = config.search
    return dict(
        param_budget=s.param_budget, seed=config.train.seed, population=s.population,
        top_k=s.top_k, num_mutations=s.num_mutations, mutation_prob=s.mutation_prob,
        num_crossovers=s.num_crossovers, generations=s.generations, max_tries=s.max_tries,
    )  # fmt: skip


def search_data(splits: Splits) -> str:
    """The search's ``data_fingerprint``, "val200:<data_digest>" of the val200 examples it
    scores its candidates on, saved with its state, so that a resume on another val200 (your
    own data rewritten, moved or not; a data_dir whose val split differs) is refused instead of
    ranking candidates scored on the two together."""
    return f"val200:{data_digest(splits.val.images, splits.val.labels)}"


def check_search(
    config: ExperimentConfig, space: SearchSpace, workdir: pathlib.Path, splits: Splits
) -> None:
    """``check_settings`` of the search ``config`` runs in ``space``, with the state saved in
    ``workdir``'s search/; of a state scored on another val200 the ValueError names what to
    delete to search the new data: search/, and retrain/, trained on the old train800val200
    (deleting the state file alone, a retrain of the subnet picked before is refused after the
    new search)."""
    try:
        check_settings(
            **search_settings(config), space=space, checkpoint_dir=workdir / "search",
            data_fingerprint=search_data(splits),
        )  # fmt: skip
    except DataMismatchError as error:
        raise ValueError(
            f"{error.what()}; use another --workdir, or the data it was scored on, or delete "
            f"{workdir / 'search'} (and {workdir / 'retrain'}, trained on the old "
            f"train800val200) to search the new data"
        ) from None


def check_runs_here(config: ExperimentConfig, workdir: str | pathlib.Path) -> pathlib.Path:
    """``workdir`` as a local Path; ValueError, before any work, for a URL as the workdir, data
    dir, cache dir, own data's path or checkpoint (``experiments.local_files``), a workdir in
    its own data (``check_outside``), a workdir or cache dir in the place of a file, the
    search's settings (a GLoRA supernet), a batch that does not split over the devices (nor,
    for a GLoRA supernet, into its subnets per step), or cuDNN attention off an NVIDIA GPU;
    FileNotFoundError
    for a checkpoint that is missing or needed (``backbones.check_weights``); DataNotFoundError
    for the task's data missing (``experiments.data.load.check_available``: a missing later
    task of ``--tasks`` fails before the first one trains)."""
    workdir = local_path(workdir, what="workdir")  # the folder checked below (~ expanded)
    own_data = config.data.task if config.data.source in PATH_SOURCES else None
    for what, path in (
        ("data.data_dir", config.data.data_dir),
        ("data.cache_dir", config.data.cache_dir),
        ("data.task", own_data),  # the npz file or the class folders' root
        ("backbone.checkpoint", config.backbone.checkpoint),
    ):
        if path is not None:
            local_path(path, what=what)
    if own_data is not None:
        check_outside(workdir, own_data)
    for what, folder in (("workdir", workdir), ("data.cache_dir", config.data.cache_dir)):
        if folder is not None:
            check_folder_path(folder, what=what)
    if config.method.searchable:
        check_settings(**search_settings(config))
    num_configs = config.train.num_configs if config.method.searchable else 1
    check_batch_split(config.train.batch_size, data_mesh(), num_configs=num_configs)
    data = config.data
    check_available(
        data.task, source=data.source, splits=run_splits(config), data_dir=data.data_dir,
        version=data.version,
    )  # fmt: skip
    check_weights(config.backbone)
    if config.backbone.attention == "cudnn" and jax.default_backend() != "gpu":
        raise ValueError(
            f"backbone.attention='cudnn' runs on NVIDIA GPUs only, and JAX's backend here is "
            f"{jax.default_backend()!r}: leave backbone.attention unset (XLA's attention)"
        )
    return workdir


def check_outside(workdir: str | pathlib.Path, data: str | pathlib.Path) -> None:
    """ValueError where a task's results folder ``workdir`` is its own data (an npz file, a
    folder of class folders) or lies in it: its files would be read as data, a class folder of
    checkpoints and plots, when the run resumes."""
    out, own = pathlib.Path(workdir).resolve(), pathlib.Path(data).resolve()
    if out == own or own in out.parents:
        raise ValueError(
            f"workdir {workdir} would put the run's results in its data {data}: give a "
            "--workdir outside it"
        )


def check_same_experiment(config: ExperimentConfig, workdir: pathlib.Path) -> None:
    """ValueError naming each key outside ``unchecked_keys`` in which ``config`` differs from
    the one ``workdir/config.json`` records (none recorded: a new workdir). A config.json that
    no checkpoint or search state was saved under (a run that failed or was killed before its
    first checkpoint) gives way to ``config`` with a warning: nothing of it would be resumed."""
    path = workdir / "config.json"
    if not path.exists():
        return
    try:
        saved = json.loads(path.read_text())
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(
            f"{path} is not readable JSON ({err}): fix it, or move it away to start the workdir "
            "over"
        ) from err
    if not isinstance(saved, dict):
        raise ValueError(f"{path} holds no JSON object (a config): fix it, or move it away")
    # a split seed of None is the default one: None -> 0 (and back) is no change
    saved_data = saved.get("data", {})
    if "split_seed" in saved_data:
        before, now = (
            DEFAULT_SPLIT_SEED if s is None else s
            for s in (saved_data["split_seed"], config.data.split_seed)
        )
        saved_data["split_seed"] = config.data.split_seed if before == now else before
    changed = config_changes(saved, config, ignore=unchecked_keys(config))
    if changed and not _holds_saved_state(workdir):
        log.warning(
            "%s was written by a run that saved no checkpoint or search state: this run starts "
            "over with its own config (%s)", path, "; ".join(changed),
        )  # fmt: skip
    elif changed:
        raise ValueError(
            f"{workdir} holds a run of another config ({'; '.join(changed)}); resuming would mix "
            f"the two: use another --workdir, or the config in {path}"
        )


@contextlib.contextmanager
def only_run_in(workdir: pathlib.Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the folder ``workdir`` (process 0 of a pod; the others
    share its run) while the block runs; ValueError where another run holds it: two runs
    writing one workdir's checkpoints and search state break each other. Every process of a
    pod learns whether process 0 got it and raises with it (else the others would run on into
    the run's collectives without it, and all would hang). On a filesystem without locks the
    block runs unlocked, with a warning. With several processes, ``check_shared`` first."""
    folder = os.open(workdir, os.O_RDONLY) if is_main_process() else None
    try:
        in_use = folder is not None and not _lock(folder, workdir)
        if jax.process_count() > 1:
            in_use = bool(multihost_utils.broadcast_one_to_all(np.int32(in_use)))
        if in_use:
            raise ValueError(
                f"{workdir} is in use by another run: wait for it to end, or use another --workdir"
            )
        if jax.process_count() > 1:
            check_shared(workdir)
        yield
    finally:
        if folder is not None:
            os.close(folder)  # releases the lock


def check_shared(workdir: pathlib.Path) -> None:
    """ValueError on every process unless each sees the file process 0 writes in ``workdir``:
    a pod's processes resume from, and write, one folder's checkpoints and search state (on
    disks of their own, a run hung at its first checkpoint: Orbax's save waits for the folder
    process 0 finalises). Collective: every process calls it."""
    token = int.from_bytes(os.urandom(4), "little") >> 1  # an int32: process 0's is broadcast
    if is_main_process():
        write_text(workdir / f".shared-{token}", str(token))
    token = int(multihost_utils.broadcast_one_to_all(np.int32(token)))  # once it is written
    probe = workdir / f".shared-{token}"
    try:
        seen = probe.read_text() == str(token)
    except OSError:
        seen = False
    blind = np.asarray(multihost_utils.process_allgather(np.int32(not seen)))  # all have read
    if is_main_process():
        probe.unlink()
    if blind.any():
        processes = ", ".join(str(i) for i in np.flatnonzero(blind))
        raise ValueError(
            f"{workdir} is not one folder of every process: process(es) {processes} cannot "
            "read what process 0 writes in it; give --workdir a folder all hosts share (NFS, a "
            "mounted bucket)"
        )


def _lock(folder: int, workdir: pathlib.Path) -> bool:
    """Take an exclusive ``flock`` on the open ``folder`` without waiting: False where another
    run holds it; True where taken, or where the filesystem has no locks (with a warning)."""
    try:
        fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as error:
        log.warning("cannot lock %s (%s): a second run in it at once is not refused",
                    workdir, error)  # fmt: skip
    return True


def _holds_saved_state(workdir: pathlib.Path) -> bool:
    """Whether ``workdir`` holds what a resumed run would build on: a finished training
    checkpoint (train/checkpoints/, retrain/<digest>/checkpoints/) or a search state."""
    runs = [workdir / "train", *(workdir / "retrain").glob("*")]
    return (workdir / "search" / STATE_FILE).exists() or any(
        saved_steps(run / CHECKPOINT_DIR) for run in runs
    )


def run(config: ExperimentConfig, workdir: str | pathlib.Path) -> dict[str, Any]:
    """Run every stage for one task; returns (and writes) the result json."""
    started = time.perf_counter()
    workdir = check_runs_here(config, workdir)
    check_same_experiment(config, workdir)
    clock = StageClock()
    splits = load_splits(config)
    clock.lap("data")
    num_classes = splits.train.num_classes
    backbone = load_backbone(config.backbone, num_classes=num_classes, seed=config.train.seed)
    bias_grad = bias_grad_for(
        config.method, num_configs=config.train.num_configs, requested=config.backbone.bias_grad
    )
    backbone = with_bias_grad(backbone, bias_grad)
    method = build_method(
        config.method, targets=backbone.targets, stacked=backbone.stacked,
        head_pattern=config.train.head_pattern, compute_dtype=backbone.compute_dtype,
    )  # fmt: skip
    # what needs the data or the model's params, checked before the workdir is taken: the
    # batch, the head, the adapter's ranks (adapted_paths traces its init), the search's budget
    if config.train.batch_size > len(splits.train):
        raise ValueError(
            f"train.batch_size {config.train.batch_size} is more than the task's "
            f"{len(splits.train)} training examples"
        )
    check_head(
        backbone.params, config.train.head_pattern,
        adapted=adapted_paths(method.adapter, backbone.params),
    )  # fmt: skip
    if method.adapter.space is not None and config.method.searchable:
        # generation 0 drawn as the search will draw it: enough random subnets fit the budget;
        # a saved search state of other settings or another val200 is refused now, not after
        # the training resumed
        check_search(config, method.adapter.space(backbone.params), workdir, splits)
    fixed = method.fixed_cfg(backbone.params)
    # a training checkpoint of other run settings or data is refused before the workdir changes
    check_resumes(
        train_settings(config), workdir / "train", cfg=fixed, run=checkpointed_settings(config),
        steps_per_epoch=len(splits.train) // config.train.batch_size,
        data=data_digest(splits.train.images, splits.train.labels),
    )  # fmt: skip
    clock.lap("backbone", backbone.params)  # the checks' second or so counted with the backbone
    # only a config that got this far is the workdir's: a typo or a refused resume that failed
    # above leaves the workdir as it was (its config.json and result.json included)
    workdir.mkdir(parents=True, exist_ok=True)
    with only_run_in(workdir):  # held to the end: a second run at once is refused
        check_same_experiment(config, workdir)  # as another run may have left it since
        if is_main_process():
            write_text(workdir / "config.json", json.dumps(as_dict(config), indent=2, default=str))
        trained = train_on(
            config,
            backbone,
            method,
            splits.train,
            workdir / "train",
            cfg=fixed,
            eval_split=splits.val,
        )
        params, aparams, cfg = trained.params, trained.aparams, fixed
        clock.lap("train", (params, aparams))
        if is_main_process():
            # an earlier run's result stands no longer: a kill before the new one is written
            # would leave it beside this run's subnet.json and merged.npz (a longer search, a
            # retrain). Training writes neither, so a run stopped in it (a checkpoint it cannot
            # read, a kill) leaves the result beside the outputs it describes.
            (workdir / RESULT_NAME).unlink(missing_ok=True)
        search: dict[str, Any] = {}
        if config.method.searchable:
            result = _search(config, backbone, method, params, aparams, splits, workdir)
            clock.lap("search")
            cfg = result.best_cfg
            search = {
                "candidates_evaluated": result.candidates_evaluated,
                "seconds": result.seconds,
                "val_accuracy": result.best_score,
            }
            if splits.retrain is not None:
                retrain_dir = workdir / "retrain" / cfg_digest(cfg)  # a longer search may pick anew
                retrained = train_on(config, backbone, method, splits.retrain, retrain_dir, cfg=cfg)
                params, aparams = retrained.params, retrained.aparams
                clock.lap("retrain", (params, aparams))

        if preempted():
            stop("before the test stage")
        adapted, served, same, merged = _test(
            config, backbone, method, params, aparams, cfg, splits.test
        )
        clock.lap("test")
        if preempted():
            stop("after the test stage, before its outputs were written")
        if is_main_process():
            write_npz(
                workdir / "merged.npz", {k: np.asarray(v) for k, v in flatten(merged).items()}
            )
        clock.lap("save")

        result_json = {
            "task": config.data.task,
            "method": config.method.name,
            "backbone": config.backbone.name,
            "bias_grad": bias_grad,
            "test_accuracy": adapted,
            "merged_test_accuracy": served,
            "merged_same_arrays": same,
            "val_accuracy_supernet_mean": trained.eval_accuracy,
            "trainable_params": method.num_adapter_params(params, aparams, cfg),
            "head_params": param_count(split_head(params, config.train.head_pattern)[1]),
            "train_seconds": trained.wall_time_s,
            "train_first_step_seconds": latest(trained.history, FIRST_STEP_S),
            "train_steps_per_sec": steady_rate(trained.history),
            "search": search,
            "wall_seconds": time.perf_counter() - started,
            "stage_seconds": clock.seconds,
            "num_test": len(splits.test),
            "num_test_available": splits.test_available,
            "test_limit": config.data.test_limit,
            "class_names": class_names(config),
            "devices": [str(d) for d in jax.devices()],
        }
        if is_main_process():
            write_text(workdir / RESULT_NAME, json.dumps(result_json, indent=2))
        return result_json


def _test(
    config: ExperimentConfig,
    backbone: Backbone,
    method: Method,
    params: Any,
    aparams: Any,
    cfg: Any,
    test: SplitArrays,
) -> tuple[float, float, bool, Any]:
    """(adapted accuracy, served accuracy, whether they are the same arrays, merged params) on
    ``test``: the adapted model as trained and searched (apply) and the plain backbone on the
    merged arrays that merged.npz keeps, both jitted (an eager merge compiles op by op); where
    apply and merge form the same arrays (an update in the params' dtype) the served model is
    the adapted one, bit for bit, and its accuracy is not computed twice."""
    test_batches = stack_eval_batches(test.images, test.labels, batch_size=config.eval_batch_size)
    accuracy = make_params_accuracy_fn(forward=backbone.forward)
    effective = jax.jit(method.adapter.apply)(params, aparams, cfg)
    adapted = accuracy(effective, test_batches)
    merged = jax.jit(method.adapter.merge)(params, aparams, cfg)
    rounded = rounds_update(effective, merged)  # checks the two trees' structure
    same = not rounded and same_arrays(effective, merged)
    served = adapted if same else accuracy(merged, test_batches)
    check_merged_agrees(adapted, served, num_test=len(test), rounded_update=rounded)
    return adapted, served, same, merged


def plot_layer_types(backbone_name: str) -> dict[str, str]:
    """The layer types (regexes) of the search's parameters-per-type plot for a backbone."""
    if backbone_name in CONV_BACKBONES:
        return search_plots.CONV_LAYER_TYPES
    return search_plots.VIT_LAYER_TYPES


def _search(
    config: ExperimentConfig,
    backbone: Backbone,
    method: Method,
    params: Any,
    aparams: Any,
    splits: Splits,
    workdir: pathlib.Path,
) -> SearchResult:
    """The evolutionary search on val200 with one vmapped jitted eval per batch of subnets; its
    state records the val200 examples' digest (``search_data``): a resume on others is refused."""
    assert method.adapter.space is not None
    space = method.adapter.space(params)
    scorer = make_config_scorer(
        forward=backbone.forward, adapter=method.adapter, params=params, aparams=aparams,
        batches=stack_eval_batches(
            splits.val.images, splits.val.labels, batch_size=config.eval_batch_size
        ),
        configs_per_call=config.search.configs_per_call,
    )  # fmt: skip
    with contextlib.closing(SearchLog(workdir / "search", enabled=is_main_process())) as log:

        def on_generation(stats: GenerationStats) -> None:  # after the state is saved
            log(stats)
            if preempted():
                stop(f"with {stats.generation + 1} search generations done, saved")

        result = evolutionary_search(
            space, scorer, checkpoint_dir=workdir / "search", data_fingerprint=search_data(splits),
            progress=is_main_process(), on_generation=on_generation, **search_settings(config),
        )  # fmt: skip
        log.finish(result.history)
    if is_main_process():
        save_result_json(result, space, workdir / "subnet.json")
        plots = workdir / "plots"
        plots.mkdir(exist_ok=True)
        search_plots.plot_score_vs_params(result, plots / "search_accuracy_vs_params.png")
        search_plots.plot_search_progress(result, plots / "search_progress.png")
        search_plots.plot_layer_config(space, result.best_cfg, plots / "subnet_layers.png")
        search_plots.plot_params_per_layer_type(
            space, result.best_cfg, plots / "params_per_type.png",
            layer_types=plot_layer_types(config.backbone.name),
        )  # fmt: skip
    return result
