python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res73; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 150 python3 scratch_dev/ab/gelu_grad_matmul.py --configs '128,128,64,3;128,128,64,2;128,128,64,4;128,64,64,4;64,128,64,4' > $R/micro-full.txt 2>&1
grep -v "^ *File\|^Traceback\|^    " $R/micro-full.txt | tail -12
echo "micro t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
grep -q "^mgpu 128,128,64,3 (rel" $R/micro-full.txt || { echo "kernel failed: no A/B"; exit 0; }
i=0
for mode in fused cur fused cur; do
  [ $SECONDS -gt 440 ] && break
  i=$((i+1))
  MLP_BWD=$mode timeout 100 python3 scratch_dev/ab/mlp_fused_ab.py --json $R/$i-$mode.json --suites train --train-batches 256 --only '^jax/train/lora-r8@256$' 2>&1 | grep -E "img/s|rror|MLP_BWD"
  echo "$i $mode t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
done
echo "end at $SECONDS s"
