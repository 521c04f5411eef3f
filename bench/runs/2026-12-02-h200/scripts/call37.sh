python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res37; mkdir -p $R
cat scratch_dev/commit.txt > $R/commit.txt
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
i=0
for e in 1 0 1 0; do
  i=$((i+1)); left=$(( 560 - SECONDS )); [ $left -lt 80 ] && { echo "skip $i"; continue; }
  EVERY_TOKEN=$e timeout $left python3 scratch_dev/ab/prune_ab.py --json $R/ab$i-every$e.json --suites train --train-batches 256 \
     --only '^jax/train/lora-r8@256$' 2>&1 | grep -E "EVERY|img/s|rror:" | sed "s/^/ab$i /"
  echo "  at $SECONDS s"
done
cd $R && tar czf $OUT/res.tgz . && ls $R
