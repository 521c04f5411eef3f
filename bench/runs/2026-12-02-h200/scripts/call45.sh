python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD:$PWD/scratch_dev/ab PYTHONUNBUFFERED=1 PROBE_STEPS=100
R=/tmp/res45; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt; cp scratch_dev/dispatch_probe.py $R/; git diff > $R/diff.txt 2>/dev/null
for pk in 1 0; do
  left=$(( 200 - SECONDS )); [ $left -lt 50 ] && { echo "skip $pk"; continue; }
  PACK=$pk timeout $left python3 scratch_dev/dispatch_probe.py 224 0.1 backbone.attention=cudnn 2>&1 | grep -E "PACK|leaves|steps/s|idle|rror" | tee -a $R/probe.txt
  echo "  at $SECONDS s"
done
left=$(( 290 - SECONDS ))
[ $left -gt 60 ] && timeout $left python3 -m bench.jax_suite --json $R/train64.json --suites train --train-batches 64 --only '^jax/train/(lora-r8|glora-supernet-k1)@64$' 2>&1 | grep -E "img/s|rror"
echo "end at $SECONDS s"
cd $R && tar czf $OUT/res.tgz . && ls $R
