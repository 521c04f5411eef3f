python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res52; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 150 python3 -m bench.jax_suite --json $R/train256.json --suites train --train-batches 256 --only '^jax/train/(lora-r8|lora-r8-weight)@256$' 2>&1 | grep -E "img/s|rror"
echo "t=$SECONDS"
(cd $R && tar czf $OUT/res.tgz .)
timeout 320 python3 -m bench.jax_suite --json $R/e2e.json --suites e2e 2>&1 | grep -vE "Warning|it/s\]|s/it\]" | tail -12
echo "end at $SECONDS s"
cd $R && tar czf $OUT/res.tgz . && ls $R
