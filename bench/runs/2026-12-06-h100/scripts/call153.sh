#!/usr/bin/env bash
# Call 153: on the GPU backend, the 86 tests call 152 did not reach within its limit.
set -o pipefail
echo "tree $(cat scratch_dev/commit.txt)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/ml_collections-*.whl .whl/tensorboardx-*.whl scratch_dev/whl312/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD:$PWD/scratch_dev PYTHONUNBUFFERED=1
mapfile -t ids < scratch_dev/call153_ids.txt
start=$(date +%s)
timeout 540 python3 -m pytest -n 14 --tb=short -p no:cacheprovider -p no:benchmark -p instafail "${ids[@]}" \
  > $OUT/pytest.log 2>&1
echo "rc=$? wall=$(( $(date +%s) - start ))s" | tee -a $OUT/pytest.log
grep "^====" $OUT/failures.txt
tail -3 $OUT/pytest.log
