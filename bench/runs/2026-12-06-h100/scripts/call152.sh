#!/usr/bin/env bash
# Call 152: the whole suite on the GPU backend (the README's test command less the benchmark
# plugin), after the fixes of 79895b9 and 6835a24; every outcome written as it happens.
set -o pipefail
echo "tree $(cat scratch_dev/commit.txt)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/ml_collections-*.whl .whl/tensorboardx-*.whl scratch_dev/whl312/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD:$PWD/scratch_dev PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
start=$(date +%s)
timeout 560 python3 -m pytest -n 14 --tb=short -p no:cacheprovider -p no:benchmark -p instafail tests \
  > $OUT/pytest.log 2>&1
echo "rc=$? wall=$(( $(date +%s) - start ))s" | tee -a $OUT/pytest.log
grep "^====" $OUT/failures.txt
tail -3 $OUT/pytest.log
wc -l $OUT/outcomes.txt; cut -d' ' -f1 $OUT/outcomes.txt | sort | uniq -c
