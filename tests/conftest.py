"""Test-session settings, made before any test starts JAX's backend, so every xdist worker and
every subprocess that inherits the environment gets them.

- XLA's CPU backend compiles at LLVM -O0. The tests check numbers, shapes and errors on tiny
  models, and their time goes mostly to XLA compiling; ``--xla_backend_optimization_level=0``
  (unless XLA_FLAGS already sets a level) cuts a 219-test subset from 163 to 107 s on 2 cores.
  Only the generated code changes: results may differ from -O2's in the last bits (other
  summation orders), which every test's tolerance covers.
- On a GPU (each unless already set): float32 matmuls and convolutions at full precision
  (``JAX_DEFAULT_MATMUL_PRECISION=highest``; by default an H100 runs them in TF32, which the
  tests' numpy references would not match; on the CPU the results are the same bits either
  way), no preallocation of 75% of the card per process (xdist workers and the subprocesses
  share it), and one card: the tests run one device in process, the multi-device ones in CPU
  subprocesses (``CUDA_VISIBLE_DEVICES=0``).
- One JAX persistent compilation cache for the session (unless JAX_COMPILATION_CACHE_DIR is
  set): the end-to-end tests and their subprocesses compile many of the same programs, and
  each is compiled once (the controller, which sets it up before the workers start, removes
  it at exit). JAX logs "Compiling ..." before it looks in the cache, so tests that count
  compiles count the same.
- The slow tests run first, so that none starts late and leaves the other worker idle at the
  end.
"""

import atexit
import os
import shutil
import tempfile

import pytest

_LEVEL = "--xla_backend_optimization_level"
if _LEVEL not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_LEVEL}=0".strip()
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "0")

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="jax-test-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (a stable sort: the same order on every xdist worker)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def cudnn_traces(monkeypatch: pytest.MonkeyPatch) -> None:
    """jax's cuDNN attention traceable on a CPU: the version and compute-capability checks of
    jax's private ``jax._src.cudnn.fused_attention_stablehlo`` patched out for the test (a
    rename there fails the patch, loudly). Only tracing works; running still needs a GPU."""
    from jax._src.cudnn import fused_attention_stablehlo as fused

    monkeypatch.setattr(fused, "check_cudnn_version", lambda *args, **kwargs: None)
    monkeypatch.setattr(fused, "check_compute_capability", lambda *args, **kwargs: True)
