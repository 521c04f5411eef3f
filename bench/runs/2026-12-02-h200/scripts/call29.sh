python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res29; mkdir -p $R
cat scratch_dev/commit.txt > $R/commit.txt
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
timeout 120 python3 scratch_dev/ab/pad_check.py 2>&1 | grep -v Warning | tee $R/pad_check.txt
echo "  at $SECONDS s"
i=0
for p in 16 2 16 2 8; do
  i=$((i+1)); left=$(( 560 - SECONDS )); [ $left -lt 70 ] && { echo "skip $p"; continue; }
  PAD_TO=$p GELU=cur timeout $left python3 scratch_dev/ab/step_ab.py --json $R/ab$i-pad$p.json --suites train --train-batches 256 \
     --only '^jax/train/lora-r8@256$' 2>&1 | grep -E "PAD|img/s|rror:" | sed "s/^/ab$i /"
  echo "  at $SECONDS s"
done
cd $R && tar czf $OUT/res.tgz . && ls $R
