python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res42; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
cp scratch_dev/ab/attention_variants.py experiments/models/attention.py
for v in cudnn2 cudnn_all xla1; do
  left=$(( 570 - SECONDS )); [ $left -lt 60 ] && { echo "skip $v"; continue; }
  LAST_BLOCK=$v timeout $left python3 -m bench.jax_suite --json $R/$v.json --suites train --train-batches 256 --only '^jax/train/(glora-fixed|lora-r8)@256$' 2>&1 | grep -E "img/s|rror" | sed "s/^/$v /"
  echo "  at $SECONDS s"
done
cd $R && tar czf $OUT/res.tgz . && ls $R
