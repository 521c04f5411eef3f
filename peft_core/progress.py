"""Progress bars that stay short in logs: on a terminal (or in a notebook's widget) tqdm redraws
its bar in place every 0.1 s; where stderr is no terminal (a CI job's or batch system's log, a
file) every redraw is kept, so there a bar redraws at most every ``LOG_REDRAW_S`` seconds (and
once when it closes): its ``mininterval`` and its ``maxinterval``, after which tqdm's monitor
thread redraws a bar that has not been drawn (10 s by default)."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

#: Seconds between two redraws of a bar written to a log (not a terminal).
LOG_REDRAW_S = 30.0


def progress_bar(
    *, total: int, initial: int = 0, disable: bool = False, desc: str | None = None
) -> tqdm:
    """A tqdm bar on stderr from ``initial`` (a resumed run's step) to ``total``."""
    in_place = sys.stderr.isatty() or tqdm.__module__ == "tqdm.notebook"
    least, most = (0.1, 10.0) if in_place else (LOG_REDRAW_S, LOG_REDRAW_S)
    return tqdm(
        total=total, initial=initial, disable=disable, desc=desc, mininterval=least,
        maxinterval=most,
    )  # fmt: skip
