# call 155 (forty-first session, 2026-12-06): call 154's first run again, alone, with room: the whole GLoRA
# task (bench.jax_suite e2e), cold, at this session's start tree (call 154's 290 s limits cut both of its
# runs in the test stage, after the search)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/ml_collections-*.whl .whl/tensorboardx-*.whl 2>/dev/null
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
R=/tmp/res155; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 420 python3 -m bench.jax_suite --json $R/1-cold-head.json --suites e2e > $R/1-cold-head.log 2>&1; echo "exit $?"
grep -vE "it/s\]|s/it\]" $R/1-cold-head.log | tail -8
cp $R/* $OUT/
