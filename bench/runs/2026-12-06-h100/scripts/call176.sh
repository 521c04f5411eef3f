#!/usr/bin/env bash
# Call 176 (fiftieth session, 2026-12-07): on the GPU backend (JAX_PLATFORMS unset; conftest.py's
# GPU defaults), the test files of the code changed since 6fbfd06's GPU-backend run that runs on
# the device (activation taps, models, adapters, supernet, training); -v logs each outcome as it
# comes, so a cut-off run still shows what finished.
set -o pipefail
echo "tree $(cat scratch_dev/commit.txt)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/ml_collections-*.whl .whl/tensorboardx-*.whl scratch_dev/whl312/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,uuid,memory.total --format=csv,noheader | tee $OUT/device.txt
start=$(date +%s)
timeout 540 python3 -m pytest -n 14 -v --tb=short -p no:cacheprovider -p no:benchmark \
  tests/test_activation_grads.py tests/test_one_read.py tests/test_flora.py tests/test_glora.py \
  tests/test_supernet.py tests/test_core.py tests/test_training.py tests/test_convnext.py \
  tests/test_efficientnet.py tests/test_vit.py > $OUT/pytest.log 2>&1
echo "rc=$? wall=$(( $(date +%s) - start ))s" | tee -a $OUT/pytest.log
grep -E "^\[gw[0-9]+\] .*(FAILED|ERROR)" $OUT/pytest.log | head -20
grep -cE "^\[gw[0-9]+\] .*PASSED" $OUT/pytest.log
tail -3 $OUT/pytest.log
