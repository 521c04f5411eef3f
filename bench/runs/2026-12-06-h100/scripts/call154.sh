# call 154 (forty-first session, 2026-12-06): the whole GLoRA task (supernet, search, test; bench.jax_suite e2e),
# cold, at this session's start tree, then the same task at 6c41c7e (call 146's tree) on the same machine:
# does the fortieth session's val200 change (unpadded, one batch of 200), sampler compiled once, configs_per_call 10, pay?
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/ml_collections-*.whl .whl/tensorboardx-*.whl 2>/dev/null
export PYTHONUNBUFFERED=1
R=/tmp/res154; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
PYTHONPATH=/tmp/site:$PWD timeout 290 python3 -m bench.jax_suite --json $R/1-cold-head.json --suites e2e > $R/1-cold-head.log 2>&1; echo "exit $?"
grep -vE "it/s\]|s/it\]" $R/1-cold-head.log | tail -8
cp $R/* $OUT/
cd scratch_dev/old146 && PYTHONPATH=/tmp/site:$PWD timeout 290 python3 -m bench.jax_suite --json $R/2-cold-6c41c7e.json --suites e2e > $R/2-cold-6c41c7e.log 2>&1; echo "exit $?"
grep -vE "it/s\]|s/it\]" $R/2-cold-6c41c7e.log | tail -8
cp $R/* $OUT/
