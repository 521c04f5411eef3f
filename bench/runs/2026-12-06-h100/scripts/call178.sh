#!/usr/bin/env bash
# Call 178 (fifty-second session, 2026-12-07; the call the fifty-first could not start): on the GPU backend (JAX_PLATFORMS unset; conftest.py's
# GPU defaults), the test files of the code changed since call 177 (a6da6f8): GLoRA ranks, layer
# reading, search plots, npz loading, asset wheels, DINOv2 and EfficientNet loading, the vtab
# command (resume checks, --set types, signals), the offline suite report, bench.end_to_end,
# the taps' weight-space fallback (fbdf3a1);
# -v logs each outcome as it comes, so a cut-off run still shows what finished.
set -o pipefail
echo "tree $(cat scratch_dev/commit.txt)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/ml_collections-*.whl .whl/tensorboardx-*.whl scratch_dev/whl312/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,uuid,memory.total --format=csv,noheader | tee $OUT/device.txt
start=$(date +%s)
timeout 450 python3 -m pytest -n 14 -v --tb=short -p no:cacheprovider -p no:benchmark \
  tests/test_glora.py tests/test_core.py tests/test_evolution.py tests/test_data_folder.py \
  tests/test_weights_cli.py tests/test_dinov2.py tests/test_efficientnet.py tests/test_readme.py \
  tests/test_offline_suite.py tests/test_bench_end_to_end.py tests/test_vtab_cli.py \
  tests/test_activation_grads.py \
  > $OUT/pytest.log 2>&1
echo "rc=$? wall=$(( $(date +%s) - start ))s" | tee -a $OUT/pytest.log
grep -E "^\[gw[0-9]+\] .*(FAILED|ERROR)" $OUT/pytest.log | head -20
grep -cE "^\[gw[0-9]+\] .*PASSED" $OUT/pytest.log
tail -3 $OUT/pytest.log
