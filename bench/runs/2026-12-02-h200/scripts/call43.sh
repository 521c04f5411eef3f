python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res43; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 560 python3 -m bench.jax_suite --json $R/e2e.json --suites e2e > $R/e2e.log 2>&1
echo "e2e rc $? at $SECONDS s"; grep -vE "it/s|s/it" $R/e2e.log | tail -20
echo "end at $SECONDS s"
cd $R && tar czf $OUT/res.tgz . && ls $R
