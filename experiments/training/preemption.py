"""Stopping a ``jax.distributed`` run for a SIGTERM (a preempted VM's notice): every process
at the same point, after saving what a rerun resumes from.

``jax.distributed.initialize`` starts JAX's preemption service, whose handler takes SIGTERM
from ``command_line.exit_on_sigterm``'s. Putting that handler back would stop only the process
the signal reached, leaving the others blocked in a collective; instead every process asks the
service (``preempted``) at the same points of the run: each training step, each search
generation once its state is saved, and before and after the test stage. The service stops
them all at the next point after the one the furthest process had reached; its contract is
one id per point, increasing, from the same start on every process, so the ids are counted
here over the whole run (a retrain's steps start again at 0).
"""

from __future__ import annotations

import itertools
import logging
import signal
from typing import NoReturn

import jax
from jax.experimental import multihost_utils

logger = logging.getLogger(__name__)

_points = itertools.count(1)  # the ids of the points the run has passed, on every process


def preempted() -> bool:
    """Whether every process has reached the point at which the run stops for a SIGTERM to
    any of its processes; every process must ask at the same points, in the same order. False
    without JAX's preemption service (no ``jax.distributed``: a SIGTERM then unwinds the
    process at once)."""
    service = jax.config.values["jax_enable_preemption_service"]
    if not (jax.distributed.is_initialized() and service):
        return False
    return multihost_utils.reached_preemption_sync_point(next(_points))


def stop(where: str) -> NoReturn:
    """Stop for a SIGTERM as ``command_line.exit_on_sigterm`` does (SystemExit(143): the
    callers' finally blocks run), logging ``where`` the run stopped."""
    logger.warning("stopped by SIGTERM %s: rerun to resume", where)
    raise SystemExit(128 + signal.SIGTERM)
