python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res61; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
ONLY='^jax/train/lora-r8@256$'
i=0
for mode in committed both none fwd bwd committed both; do
  i=$((i+1))
  if [ $mode = committed ]; then
    timeout 90 python3 -m bench.jax_suite --json $R/$i-$mode.json --suites train --train-batches 256 --only "$ONLY" 2>&1 | grep -E "img/s|rror"
  else
    FUSE=$mode timeout 90 python3 scratch_dev/ab/fused_ab.py --json $R/$i-$mode.json --suites train --train-batches 256 --only "$ONLY" 2>&1 | grep -E "img/s|rror|FUSE|fused interceptor"
  fi
  echo "$i $mode t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
done
echo "end at $SECONDS s"
