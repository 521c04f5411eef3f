#!/usr/bin/env bash
# Call 168 (forty-fifth session, 2026-12-07): the test files this session changed most
# (checkpoints and resume, the vtab CLI, the data check, the offline suite, training) on the
# GPU machine's jax 0.11.2 / flax 0.12.10 / orbax 0.12.4 (CI runs jax 0.10.2): Orbax's errors for
# deleted checkpoint items and its read-only manager are version-dependent.
set -o pipefail
echo "tree $(cat scratch_dev/commit.txt)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/ml_collections-*.whl .whl/tensorboardx-*.whl scratch_dev/whl312/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,uuid,memory.total --format=csv,noheader | tee $OUT/device.txt
python3 -c "import jax, flax, orbax.checkpoint as o, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'orbax', o.__version__, 'optax', optax.__version__)" | tee $OUT/versions.txt
start=$(date +%s)
timeout 420 python3 -m pytest -n 14 --tb=short -p no:cacheprovider -q tests/test_checkpoint.py \
  tests/test_vtab_cli.py tests/test_data_available.py tests/test_offline_suite.py tests/test_training.py \
  > $OUT/pytest.log 2>&1
echo "rc=$? wall=$(( $(date +%s) - start ))s" | tee -a $OUT/pytest.log
grep -E "^(FAILED|ERROR)" $OUT/pytest.log | head -30
tail -3 $OUT/pytest.log
