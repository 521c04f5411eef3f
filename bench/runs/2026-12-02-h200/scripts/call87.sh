python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res87; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
(while true; do sleep 20; (cd $R && tar czf $OUT/res.tgz .); done) &
timeout 545 python3 -m bench.jax_suite --json $R/conv-isolated.json --suites conv --isolate 2>&1 | grep -E "img/s|rror|\\$" | tee $R/log.txt
(cd $R && tar czf $OUT/res.tgz .)
