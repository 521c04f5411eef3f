#!/usr/bin/env bash
# Call 181 (fifty-second session, 2026-12-07): the 5 tests call 180 did not pass before its 420 s
# timeout (two failed there, whose tracebacks its cut-off log lacks; three not reached), on the
# GPU backend (JAX_PLATFORMS unset; conftest.py GPU defaults), listed in call181/ids.txt (the script reads scratch_dev/call181_ids.txt, a copy).
set -o pipefail
echo "tree $(cat scratch_dev/commit.txt)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/ml_collections-*.whl .whl/tensorboardx-*.whl scratch_dev/whl312/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,uuid,memory.total --format=csv,noheader | tee $OUT/device.txt
mapfile -t ids < scratch_dev/call181_ids.txt
start=$(date +%s)
timeout 300 python3 -m pytest -n 5 -v --tb=short -p no:cacheprovider -p no:benchmark "${ids[@]}" \
  > $OUT/pytest.log 2>&1
echo "rc=$? wall=$(( $(date +%s) - start ))s" | tee -a $OUT/pytest.log
grep -E "^\[gw[0-9]+\] .*(FAILED|ERROR)" $OUT/pytest.log | head -20
grep -cE "^\[gw[0-9]+\] .*PASSED" $OUT/pytest.log
tail -3 $OUT/pytest.log
