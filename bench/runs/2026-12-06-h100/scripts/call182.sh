#!/usr/bin/env bash
# Call 182 (fifty-second session, 2026-12-07): on the GPU backend (JAX_PLATFORMS unset;
# conftest.py's GPU defaults), the test files changed since the whole-suite GPU run (6fbfd06,
# calls 152-153) that no later GPU-backend call ran (176-181): host-side data, bench CLI,
# profile and scaling, cuDNN traces, search log, tables; cut at 90 s by the session's device time left.
set -o pipefail
echo "tree $(cat scratch_dev/commit.txt)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/ml_collections-*.whl .whl/tensorboardx-*.whl scratch_dev/whl312/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,uuid,memory.total --format=csv,noheader | tee $OUT/device.txt
start=$(date +%s)
timeout 90 python3 -m pytest -n 14 -v --tb=short -p no:cacheprovider -p no:benchmark \
  tests/test_bench_cli.py tests/test_bench_profile.py tests/test_bench_scaling.py \
  tests/test_cudnn_traces.py tests/test_search_log.py tests/test_atomic_files.py \
  tests/test_data_available.py tests/test_data_offline.py tests/test_data_pipeline.py \
  tests/test_data_preprocess.py tests/test_data_vtab.py tests/test_digest.py \
  tests/test_host_init.py tests/test_local_files.py tests/test_packing.py \
  tests/test_torch_zip.py tests/test_vtab_table.py \
  > $OUT/pytest.log 2>&1
echo "rc=$? wall=$(( $(date +%s) - start ))s" | tee -a $OUT/pytest.log
grep -E "^\[gw[0-9]+\] .*(FAILED|ERROR)" $OUT/pytest.log | head -20
grep -cE "^\[gw[0-9]+\] .*PASSED" $OUT/pytest.log
grep -E "^(FAILED|ERROR) |^E  " $OUT/pytest.log | head -30
tail -3 $OUT/pytest.log
