python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res57; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 380 python3 -m bench.jax_suite --json $R/conv.json --suites conv --only 'flora|lora' 2>&1 | grep -E "img/s|rror"
echo "end at $SECONDS s"
cd $R && tar czf $OUT/res.tgz . && ls $R
