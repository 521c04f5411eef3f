python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res51; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 200 python3 -m bench.jax_suite --json $R/train64.json --suites train --train-batches 64 --only '^jax/train/(lora-r8|glora-supernet-k1|glora-supernet-k4)@64$' 2>&1 | grep -E "img/s|rror"
echo "t=$SECONDS"
TAP=xla timeout 80 python3 scratch_dev/ab/tap_ab.py --json $R/tap64_xla.json --suites train --train-batches 64 --only "^jax/train/lora-r8-activation-prototype@64$" 2>&1 | grep -E "TAP|img/s|rror"
timeout 330 python3 -m bench.jax_suite --json $R/e2e.json --suites e2e 2>&1 | grep -vE "Warning|it/s\]|s/it\]" | tail -30
echo "end at $SECONDS s"
cd $R && tar czf $OUT/res.tgz . && ls $R
