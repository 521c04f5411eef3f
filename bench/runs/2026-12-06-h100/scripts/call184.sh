#!/usr/bin/env bash
# Call 184 (fifty-third session, 2026-12-07; the machine of call 183): on the GPU backend, the
# test files of the code changed since: peft_core.flatten in JAX's leaf order (every adapter's
# layer order), experiments.weights through run_main, pipeline.check_shared.
set -o pipefail
echo "tree $(cat scratch_dev/commit.txt)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/ml_collections-*.whl .whl/tensorboardx-*.whl scratch_dev/whl312/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,uuid,memory.total --format=csv,noheader | tee $OUT/device.txt
start=$(date +%s)
timeout 400 python3 -m pytest -n 14 -v --tb=short -p no:cacheprovider -p no:benchmark \
  tests/test_core.py tests/test_flora.py tests/test_glora.py tests/test_supernet.py \
  tests/test_activation_grads.py tests/test_models_adapters.py tests/test_dense.py \
  tests/test_weights_cli.py tests/test_methods.py \
  > $OUT/pytest.log 2>&1
echo "rc=$? wall=$(( $(date +%s) - start ))s" | tee -a $OUT/pytest.log
grep -E "^\[gw[0-9]+\] .*(FAILED|ERROR)" $OUT/pytest.log | head -20
grep -cE "^\[gw[0-9]+\] .*PASSED" $OUT/pytest.log
grep -E "^(FAILED|ERROR) |^E  |^SKIPPED" $OUT/pytest.log | head -30
tail -3 $OUT/pytest.log
