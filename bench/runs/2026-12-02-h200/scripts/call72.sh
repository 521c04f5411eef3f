python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res72; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
i=0
for mode in cur none nobwd nofwd cur; do
  [ $SECONDS -gt 420 ] && break
  i=$((i+1))
  GELU_PASS=$mode timeout 110 python3 scratch_dev/ab/gelu_bound_ab.py --json $R/$i-$mode.json --suites train --train-batches 256 --only '^jax/train/lora-r8@256$' 2>&1 | grep -E "img/s|rror|GELU_PASS"
  echo "$i $mode t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
done
echo "end at $SECONDS s"
