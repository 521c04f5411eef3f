"""Orbax checkpoints of the training state, refused when they do not fit the current model.

Each checkpoint step holds two items:
- "state": the TrainState (trainable, optimiser state, step = data position, rng as key data);
- "meta":  JSON with "signature" {leaf path: [shape, dtype]} of that state and "run", what
  the trainer says makes the run (its settings), both compared with the current ones before
  anything is restored: a checkpoint of another model, adapter, optimiser, dtype or run is
  refused with the mismatching leaves or settings named; "wall_time_s", the run's
  training seconds up to that step (a resumed run's wall time goes on from it); and "digest",
  each leaf's digest (``experiments.training.digest``), compared after a restore: a checkpoint
  whose files were damaged after the save is refused, not restored as other numbers.
"""

from __future__ import annotations

import json
import logging
import pathlib
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp

from experiments.training.digest import tree_digest
from experiments.training.state import TrainState
from peft_core import check_tree

JsonSignature = dict[str, list[Any]]


class CheckpointMismatchError(ValueError):
    """A checkpoint's tree does not fit the state it would be restored into."""


class CheckpointUnreadableError(ValueError):
    """A checkpoint folder whose saved items cannot be read (files deleted, torn or damaged)."""


_CAUSE_CHARS = 300


def _short(why: str) -> str:
    """``why`` without TensorStore's specs, cut to its first ``_CAUSE_CHARS``."""
    why = why.split(" [tensorstore_spec", 1)[0]  # TensorStore appends its specs as JSON
    return why[:_CAUSE_CHARS] + " ..." if len(why) > _CAUSE_CHARS else why


def _unreadable(folder: pathlib.Path, why: str) -> CheckpointUnreadableError:
    """The error for checkpoint ``folder``, ``why`` made ``_short``."""
    return CheckpointUnreadableError(
        f"checkpoint {folder} cannot be read ({_short(why)}): delete that folder to resume from "
        "the checkpoint before it (or from the start)"
    )


def signature(tree: Any) -> dict[str, jax.ShapeDtypeStruct]:
    """{keystr path: ShapeDtypeStruct} of every leaf."""
    return {
        jax.tree_util.keystr(path): jax.ShapeDtypeStruct(leaf.shape, leaf.dtype)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def _to_json(sig: dict[str, jax.ShapeDtypeStruct]) -> JsonSignature:
    return {path: [list(s.shape), str(s.dtype)] for path, s in sig.items()}


def _from_json(sig: JsonSignature) -> dict[str, jax.ShapeDtypeStruct]:
    return {path: jax.ShapeDtypeStruct(tuple(shape), dtype) for path, (shape, dtype) in sig.items()}


def _check_fits(
    current: dict[str, jax.ShapeDtypeStruct], saved: dict[str, jax.ShapeDtypeStruct], *, what: str
) -> None:
    """CheckpointMismatchError unless ``saved`` has ``current``'s paths, shapes and dtypes."""
    for prefix in (".trainable", ""):
        try:
            check_tree(
                {p: s for p, s in current.items() if p.startswith(prefix)},
                {p: s for p, s in saved.items() if p.startswith(prefix)},
                what=what,
            )
        except ValueError as err:
            raise CheckpointMismatchError(
                f"refusing to restore: {err} (missing = in the current model/adapter/optimiser "
                "state but not in the checkpoint)"
            ) from err
    retyped = [
        f"{path}: {saved[path].dtype} saved, {s.dtype} now"
        for path, s in current.items()
        if saved[path].dtype != s.dtype
    ]
    if retyped:
        more = " ..." if len(retyped) > 10 else ""
        raise CheckpointMismatchError(
            f"refusing to restore: {what} holds other dtypes: " + ", ".join(retyped[:10]) + more
        )


def setting_changes(
    saved: Mapping[str, Any], current: Mapping[str, Any], *, ignore: Iterable[str] = ()
) -> list[str]:
    """Lines "key: saved -> now" for each key of both outside ``ignore`` whose value ``current``
    changes. Keys ``saved`` lacks were added since (it ran with their defaults' behaviour), keys
    ``current`` lacks no longer make the run (a knob its method does not read): no change."""
    skip = set(ignore)
    return [
        f"{k}: {value!r} -> {current[k]!r}"
        for k, value in sorted(saved.items())
        if k not in skip and k in current and value != current[k]
    ]


#: The run setting that names the training data (``trainer.run_settings``).
DATA_SETTING = "train_data"


def _check_same_run(current: Mapping[str, Any], saved: Mapping[str, Any], *, what: str) -> None:
    """CheckpointMismatchError naming each setting in which ``saved`` differs from ``current``
    (and saying so in words where the training data changed)."""
    changed = setting_changes(saved, current)
    if changed:
        data = any(line.startswith(f"{DATA_SETTING}: ") for line in changed)
        why = "the training data changed since the checkpoint was written: " if data else ""
        raise CheckpointMismatchError(
            f"refusing to resume: {why}{what} was written by a run with other settings ("
            + "; ".join(changed)
            + "); resuming would splice two runs: use another workdir, or the saved settings"
        )


_READ_ERRORS = (KeyError, FileNotFoundError, ValueError)


def _read_error(err: BaseException | None) -> BaseException | None:
    """The first of ``err`` and its causes that says files could not be read (Orbax re-raises
    a chunk's read error as a bare ``Exception`` on some paths), or None."""
    while err is not None and not isinstance(err, _READ_ERRORS):
        err = err.__cause__
    return err


def _restore_items(manager: ocp.CheckpointManager, step: int, **items: Any) -> Any:
    """``items`` (name -> Orbax restore args) of checkpoint ``step``; CheckpointUnreadableError
    naming its folder where they cannot be read."""
    _drop_closed_loop_callbacks()  # before: a read may call back before the error reaches here
    try:
        return manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as err:
        cause = _read_error(err)
        if cause is None:
            raise
        folder = pathlib.Path(manager.directory) / str(step)
        why = f"{type(cause).__name__}: {cause}"
        if str(cause).startswith(_FOR_NOW):
            raise OSError(
                f"checkpoint {folder} could not be read now ({_short(why)}): check the folder's "
                "permissions and storage, then rerun"
            ) from err
        raise _unreadable(folder, why) from err


#: TensorStore's statuses (the start of its ValueError's message) of a read that may succeed
#: later: the checkpoint is not damaged.
_FOR_NOW = (
    "PERMISSION_DENIED", "UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "CANCELLED",
    "ABORTED", "UNAUTHENTICATED",
)  # fmt: skip


def _drop_closed_loop_callbacks() -> None:
    """Have ``sys.unraisablehook`` drop the "Event loop is closed" errors of failed restores:
    Orbax abandons a failed restore's other TensorStore reads, and each, finishing later, calls
    back into the event loop Orbax has closed (a traceback apiece around the error). Other
    errors pass on to the hook it wraps."""
    previous = sys.unraisablehook
    if getattr(previous, "drops_closed_loop", False):
        return

    def hook(unraisable: Any) -> None:
        error, frame = unraisable.exc_value, unraisable.exc_traceback
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        closed = (
            isinstance(error, RuntimeError)
            and str(error) == "Event loop is closed"
            and frame is not None
            and frame.tb_frame.f_code.co_name == "_check_closed"
        )
        if not closed:
            previous(unraisable)

    hook.drops_closed_loop = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def _check_digest(restored: dict[str, int], saved: dict[str, int], folder: pathlib.Path) -> None:
    """CheckpointUnreadableError naming the leaves whose restored bits differ from the saved."""
    changed = [path for path, digest in restored.items() if saved.get(path) != digest]
    if changed:
        more = " ..." if len(changed) > 5 else ""
        raise _unreadable(
            folder,
            "its files changed after the save: the arrays read back differ from those saved at "
            + ", ".join(changed[:5])
            + more,
        )


def _saved_meta(manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
    """The "meta" item of checkpoint ``step``."""
    return dict(_restore_items(manager, step, meta=ocp.args.JsonRestore()).meta)


def check_saved_run(directory: str | pathlib.Path, run: Mapping[str, Any]) -> None:
    """CheckpointMismatchError where the latest finished checkpoint in ``directory`` was written
    by a run whose settings differ from ``run`` (what ``Checkpointer.restore`` would refuse for
    its settings); nothing where there is none. Reads only: no folder or file is written."""
    steps = saved_steps(directory)
    if not steps or not run:
        return
    path = pathlib.Path(directory).absolute()
    # Orbax warns that a read-only manager's directory "is read only", which reads as if the
    # workdir could not be written: this one only reads the latest checkpoint's settings.
    absl_log = logging.getLogger("absl")
    quiet = _DropReadOnlyNotes()
    absl_log.addFilter(quiet)
    try:
        manager = ocp.CheckpointManager(
            path, options=ocp.CheckpointManagerOptions(create=False, read_only=True)
        )
    finally:
        absl_log.removeFilter(quiet)
    try:
        meta = _saved_meta(manager, steps[-1])
    finally:
        manager.close()
    if "run" in meta:  # older checkpoints do not say
        current = json.loads(json.dumps(dict(run)))  # as it reads back from JSON
        _check_same_run(current, meta["run"], what=f"checkpoint {path / str(steps[-1])}")


class _DropReadOnlyNotes(logging.Filter):
    """Drops Orbax's notes that a CheckpointManager opened read-only is read-only."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.startswith("Given directory is read only=")
            or message.startswith("CheckpointManagerOptions.read_only=True")
        )


def _storable(state: TrainState) -> TrainState:
    """The state with its typed rng key as raw uint32 key data (what Orbax stores)."""
    return state._replace(rng=jax.random.key_data(state.rng))


def saved_steps(directory: str | pathlib.Path) -> list[int]:
    """The steps of the finished checkpoints in ``directory``, ascending ([] for none, or no
    folder); an interrupted save's temporary folder is none."""
    path = pathlib.Path(directory)
    return sorted(ocp.utils.checkpoint_steps(path)) if path.is_dir() else []


class _Manager(ocp.CheckpointManager):
    """An Orbax CheckpointManager that leaves JAX's preemption service to
    ``experiments.training.preemption``: Orbax asks the service at each save (and, saving in
    the background, from another thread) whether a sync point is reached, passing the
    checkpoint's step, which moves the one counter the service keeps per process. A resumed
    run's or a retrain's steps are not the points the run counts, so the processes would
    agree to stop at one the run never reaches."""

    def reached_preemption(self, step: int) -> bool:
        return False


class Checkpointer:
    """Save every ``every`` steps (and when forced), keep the last ``keep``, restore with checks.

    run: JSON-ready settings that make the run (``experiments.training.trainer.run_settings``),
    stored with each checkpoint; a checkpoint of other settings is not restored.
    """

    def __init__(
        self,
        directory: str | pathlib.Path,
        *,
        every: int,
        keep: int,
        run: Mapping[str, Any] | None = None,
    ) -> None:
        self.directory = pathlib.Path(directory).absolute()
        self.every = every
        self.run = json.loads(json.dumps(dict(run or {})))  # as it reads back from JSON
        self._manager = _Manager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        )

    def latest_step(self) -> int | None:
        step: int | None = self._manager.latest_step()
        return step

    def due(self, step: int) -> bool:
        """Whether the periodic schedule saves at ``step``."""
        return self.every > 0 and step % self.every == 0

    def save(self, state: TrainState, *, wall_time_s: float = 0.0) -> None:
        """Write ``state`` under its step (asynchronously; ``close`` waits for it), with the
        run's training seconds up to it."""
        storable = _storable(state)
        step = int(state.step)
        meta = {
            "signature": _to_json(signature(storable)),
            "run": self.run,
            "wall_time_s": float(wall_time_s),
            "digest": tree_digest(storable),
        }
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(storable), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )

    def _check_saved(self, step: int) -> None:
        """FileNotFoundError naming the saved steps unless checkpoint ``step`` was saved (one
        never saved is no damaged checkpoint to delete)."""
        steps = sorted(self._manager.all_steps())
        if step not in steps:
            raise FileNotFoundError(
                f"no checkpoint of step {step} in {self.directory} (saved steps: {steps})"
            )

    def wall_time_s(self, step: int) -> float:
        """The run's training seconds up to checkpoint ``step`` (0.0 if it did not record them)."""
        self._check_saved(step)
        return float(_saved_meta(self._manager, step).get("wall_time_s", 0.0))

    def restore(self, template: TrainState, step: int | None = None) -> TrainState:
        """The state saved at ``step`` (default: the latest), laid out like ``template``.

        Raises CheckpointMismatchError naming missing / unexpected / mis-shaped / retyped
        leaves when the checkpoint does not fit ``template`` (the trainable tree's leaves first,
        then optimiser and the rest) or the settings that differ from its run's,
        FileNotFoundError when there is no checkpoint (of ``step``).
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        self._check_saved(step)
        storable = _storable(template)
        meta = _saved_meta(self._manager, step)
        what = f"checkpoint {self.directory / str(step)}"
        _check_fits(signature(storable), _from_json(meta["signature"]), what=what)
        if self.run and "run" in meta:  # either side may not say (older checkpoints)
            _check_same_run(self.run, meta["run"], what=what)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, storable)
        restored = _restore_items(
            self._manager, step, state=ocp.args.StandardRestore(abstract)
        ).state
        if "digest" in meta:  # older checkpoints do not hold one
            _check_digest(tree_digest(restored), meta["digest"], self.directory / str(step))
        return restored._replace(rng=jax.random.wrap_key_data(restored.rng))

    def close(self) -> None:
        """Wait for pending saves and release the manager."""
        self._manager.wait_until_finished()
        self._manager.close()
