"""How the command-line entry points run: their logging, signals and error messages."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from experiments.local_files import local_path

#: Loggers whose INFO lines are chatter to a user of the commands: Orbax's (through absl: about
#: 40 lines a checkpoint) and jax's backend probing ("Unable to initialize backend 'tpu'").
QUIET_LOGGERS = ("absl", "jax._src.xla_bridge")


def setup_logging(*, timestamps: bool = False) -> None:
    """INFO lines as "INFO name: message" (after the time with ``timestamps``) on stderr,
    replacing a handler an import installed; ``QUIET_LOGGERS`` from WARNING up only."""
    fmt = ("%(asctime)s " if timestamps else "") + "%(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.INFO, format=fmt, force=True)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def exit_on_sigterm(hint: str = "") -> None:
    """Make SIGTERM (a preempted VM's notice) unwind like Ctrl-C: ``finally`` blocks run, so a
    checkpoint being written is finished (the default action killed it mid-save); the exit
    status is 128 + 15, as a shell reports a process that SIGTERM ended. ``hint``, if any, is
    printed to stderr first (how to go on)."""

    def stop(signum: int, frame: object) -> None:
        if hint:
            print(f"stopped by SIGTERM: {hint}", file=sys.stderr, flush=True)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def exit_on_error(main: Callable[[], int]) -> NoReturn:
    """``sys.exit(main())``; a ValueError, OSError or FloatingPointError (bad input, unreadable
    files, a loss that a learning rate too high made NaN) exits with status 1 and "error:
    <type>: <message>" on stderr, without a traceback."""
    try:
        status = main()
    except (ValueError, OSError, FloatingPointError) as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    sys.exit(status)


def run_main(main: Callable[[], int], *, resume_hint: str, timestamps: bool = False) -> NoReturn:
    """``exit_on_error(main)`` as a command: ``setup_logging``; SIGTERM and Ctrl-C stop with
    ``resume_hint`` on stderr (exit status 143 and 130; once ``main`` has unwound, the process
    exits without the interpreter's teardown or atexit handlers: ``_exit_now``)."""
    setup_logging(timestamps=timestamps)
    exit_on_sigterm(resume_hint)
    try:
        exit_on_error(main)
    except KeyboardInterrupt:
        print(f"interrupted: {resume_hint}", file=sys.stderr, flush=True)
        _exit_now(128 + signal.SIGINT)
    except SystemExit as stopped:
        if stopped.code != 128 + signal.SIGTERM:
            raise
        _exit_now(128 + signal.SIGTERM)


def _exit_now(status: int) -> NoReturn:
    """Exit with ``status`` after a signal stopped the command (every finally block has run,
    every file is closed), past the interpreter's teardown: a signal that came while XLA
    compiled (a checkpoint's first unpack) crashed that teardown with SIGSEGV (status -11)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def path_argument(text: str) -> Path:
    """argparse ``type`` of a file or folder option: ``text`` as a Path, an empty one (which
    would be the working directory) or a URL refused with ``local_path``'s message."""
    try:
        return local_path(text, what="this")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def spellings(flag: str) -> tuple[str, str]:
    """``flag`` and its other spelling, for ``add_argument``: "--dry_run" -> ("--dry_run",
    "--dry-run"); the first names the option's dest and help line."""
    other = flag[:2] + (flag[2:].replace("_", "-") if "_" in flag else flag[2:].replace("-", "_"))
    return flag, other


def positive_int(text: str) -> int:
    """argparse ``type``: an integer >= 1."""
    return _int_at_least(text, 1)


def count_or_zero(text: str) -> int:
    """argparse ``type``: an integer >= 0 (how many to print or keep; 0: all)."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
    return value
