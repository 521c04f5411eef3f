#!/usr/bin/env bash
# Call 174 (fiftieth session, 2026-12-07): call 169's script, -v (each result logged as it comes), the whole suite (the README's test command,
# -n 16) at the current tree on the GPU machine's software (Python 3.12, jax 0.11.2, flax 0.12.10,
# optax 0.2.8, orbax 0.12.4) on its CPU (JAX_PLATFORMS=cpu, as CI), the missing pure
# dependencies (tensorflow-datasets and its own, pytest-xdist, ...) carried as cp312 wheels.
set -o pipefail
echo "tree $(cat scratch_dev/commit.txt)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/ml_collections-*.whl .whl/tensorboardx-*.whl scratch_dev/whl312/*.whl || exit 1
ls scratch_dev/whl312 .whl > $OUT/carried_wheels.txt
export PYTHONPATH=/tmp/site:$PWD
python3 - <<'PY' | tee $OUT/versions.txt
import sys, importlib.metadata as md
print("python", sys.version.split()[0])
for n in ["jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "einops", "numpy", "ml-dtypes",
          "tensorflow-datasets", "array-record", "tensorboardX", "matplotlib", "pytest", "pytest-xdist",
          "onnx", "onnxruntime", "scikit-learn", "pillow", "tqdm"]:
    try:
        print(n, md.version(n))
    except md.PackageNotFoundError:
        print(n, "MISSING")
PY
nvidia-smi --query-gpu=name,uuid,memory.total --format=csv,noheader | tee $OUT/device.txt
export JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1
start=$(date +%s)
timeout 570 python3 -m pytest -n 16 -v --durations=15 --tb=short -p no:cacheprovider tests > $OUT/pytest.log 2>&1
echo "rc=$? wall=$(( $(date +%s) - start ))s" | tee -a $OUT/pytest.log
grep -E "^(FAILED|ERROR)" $OUT/pytest.log | head -30
tail -3 $OUT/pytest.log
