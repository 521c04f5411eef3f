"""Two CPU processes of one ``jax.distributed`` cluster, for the tests of multi-host runs."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def two_processes(code: str, *args: str, devices: int = 1) -> Iterator[list[subprocess.Popen[str]]]:
    """Two CPU processes of ``devices`` devices each running ``code`` with ``args``, started as
    SLURM starts a job's two tasks: ``jax.distributed.initialize()`` (``--distributed``) finds
    the cluster in their environment. Killed when the block leaves."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    with socket.socket() as free:
        free.bind(("localhost", 0))
        address = f"localhost:{free.getsockname()[1]}"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, *args],
            env={
                **os.environ,
                "JAX_PLATFORMS": "cpu",
                "XLA_FLAGS": flags,
                "JAX_COORDINATOR_ADDRESS": address,
                "SLURM_JOB_ID": "1",
                "SLURM_STEP_NODELIST": "localhost",
                "SLURM_NTASKS": "2",
                "SLURM_PROCID": str(i),
                "SLURM_LOCALID": str(i),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        yield processes
    finally:
        for p in processes:
            p.kill()


def outputs(
    processes: list[subprocess.Popen[str]], *, status: int, timeout: float = 60
) -> list[tuple[str, str]]:
    """(stdout, stderr) of each of ``processes``, after checking that each exits with
    ``status`` within ``timeout`` seconds."""
    done = [p.communicate(timeout=timeout) for p in processes]
    for p, (stdout, stderr) in zip(processes, done, strict=True):
        assert p.returncode == status, stdout + stderr
    return done
