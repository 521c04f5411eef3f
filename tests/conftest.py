"""Test-session setting: XLA's CPU backend compiles at LLVM -O0.

The tests check numbers, shapes and errors on tiny models, and their time goes mostly to XLA
compiling; ``--xla_backend_optimization_level=0`` (unless XLA_FLAGS already sets a level) cuts a
219-test subset from 163 to 107 s on 2 cores. Only the generated code changes: results may differ
from -O2's in the last bits (other summation orders), which every test's tolerance covers. Set
here, before any test starts JAX's backend, so every xdist worker and every subprocess that
inherits the environment gets it.
"""

import os

_LEVEL = "--xla_backend_optimization_level"
if _LEVEL not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_LEVEL}=0".strip()
