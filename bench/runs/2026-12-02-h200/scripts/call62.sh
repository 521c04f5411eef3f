python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res62; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 380 python3 -m bench.jax_suite --json $R/e2e.json --suites e2e 2>&1 | grep -vE "Warning|it/s\]|s/it\]" | tail -8
echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
timeout 100 python3 -m bench.jax_suite --json $R/search.json --suites search 2>&1 | grep -vE "Warning|it/s\]|s/it\]" | tail -4
echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
timeout 90 python3 -m bench.jax_suite --json $R/infer.json --suites infer 2>&1 | grep -vE "Warning|it/s\]|s/it\]" | tail -8
echo "end at $SECONDS s"; (cd $R && tar czf $OUT/res.tgz .)
