python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res42; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
git diff --stat > $R/diff.txt 2>/dev/null; cp experiments/models/attention.py $R/
timeout 115 python3 -m bench.jax_suite --json $R/b.json --suites train --train-batches 256 --only '^jax/train/(glora-fixed|lora-r8)@256$' 2>&1 | grep -E "img/s|Error"
echo "end at $SECONDS s"
cd $R && tar czf $OUT/res.tgz . && ls $R
