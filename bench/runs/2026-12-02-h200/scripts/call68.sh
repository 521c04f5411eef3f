python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res68; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
ONLY='^jax/train/(lora-r8|biases-only)@256$'
i=0
for step in train:fold train:add infer:fold infer:add train:fold train:add; do
  [ $SECONDS -gt 450 ] && break
  i=$((i+1)); suite=${step%%:*}; mode=${step##*:}
  if [ $suite = train ]; then args="--suites train --train-batches 256 --only $ONLY"; else args="--suites infer"; fi
  VALUE_BIAS=$mode timeout 130 python3 scratch_dev/ab/value_bias_ab.py --json $R/$i-$suite-$mode.json $args 2>&1 | grep -E "img/s|rror|VALUE_BIAS"
  echo "$i $step t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
done
echo "end at $SECONDS s"
