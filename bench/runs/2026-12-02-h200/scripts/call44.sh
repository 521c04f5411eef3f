python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD:$PWD/scratch_dev/ab PYTHONUNBUFFERED=1 PROBE_STEPS=100
R=/tmp/res44; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt; cp scratch_dev/dispatch_probe.py $R/
for v in "0 0.1" "1 0.1" "0 0.0" "1 0.0"; do
  set -- $v; left=$(( 540 - SECONDS )); [ $left -lt 50 ] && { echo "skip $v"; continue; }
  EVERY_TOKEN=$1 timeout $left python3 scratch_dev/dispatch_probe.py 224 $2 backbone.attention=cudnn 2>&1 | grep -E "steps/s|rror" | tee -a $R/probe.txt
  echo "  at $SECONDS s"
done
cd $R && tar czf $OUT/res.tgz . && ls $R
