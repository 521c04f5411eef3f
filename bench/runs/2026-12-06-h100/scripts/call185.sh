#!/usr/bin/env bash
# Call 185 (fifty-third session, 2026-12-07; never ran: no machine started in the device time
# left): on the GPU backend, the test files of the code
# changed since call 184: the init test compared up to rounding, exclude= against the targeted
# paths, the dry run's backbone-unread knobs, open_npz's first bytes, TensorBoard events
# written synchronously (metrics.EventFile).
set -o pipefail
echo "tree $(cat scratch_dev/commit.txt)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/ml_collections-*.whl .whl/tensorboardx-*.whl scratch_dev/whl312/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,uuid,memory.total --format=csv,noheader | tee $OUT/device.txt
start=$(date +%s)
timeout 280 python3 -m pytest -n 14 -v --tb=short -p no:cacheprovider -p no:benchmark \
  tests/test_core.py tests/test_local_files.py tests/test_data_folder.py \
  tests/test_weights_cli.py tests/test_training.py tests/test_search_log.py \
  tests/test_vtab_cli.py -m "not slow" \
  > $OUT/pytest.log 2>&1
echo "rc=$? wall=$(( $(date +%s) - start ))s" | tee -a $OUT/pytest.log
grep -E "^\[gw[0-9]+\] .*(FAILED|ERROR)" $OUT/pytest.log | head -20
grep -cE "^\[gw[0-9]+\] .*PASSED" $OUT/pytest.log
grep -E "^(FAILED|ERROR) |^E  |^SKIPPED" $OUT/pytest.log | head -30
tail -3 $OUT/pytest.log
