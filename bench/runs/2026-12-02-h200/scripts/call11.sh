python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res11; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
timeout 200 python3 -m bench.profile --cases glora-supernet-k4 --batch 256 --top 0 --out $R/prof 2>&1 | tail -5
echo "profile at $SECONDS s"
left=$(( 560 - SECONDS ))
timeout $left python3 -m bench.jax_suite --json $R/train64.jax.json --suites train --train-batches 64 \
   --only '^jax/train/(glora-supernet-k1|glora-supernet-k4|glora-fixed|lora-r8)@64$' 2>&1 | grep -E "img/s|Error"
echo "train64 at $SECONDS s"
cd $R && tar czf $OUT/res.tgz . && ls -R $R | head
