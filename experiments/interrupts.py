"""How the command-line entry points stop on a signal."""

from __future__ import annotations

import signal


def exit_on_sigterm() -> None:
    """Make SIGTERM (a preempted VM's notice) unwind like Ctrl-C: ``finally`` blocks run, so a
    checkpoint being written is finished (the default action killed it mid-save); the exit
    status is 128 + 15, as a shell reports a process that SIGTERM ended."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
