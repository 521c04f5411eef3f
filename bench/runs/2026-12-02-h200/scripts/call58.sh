python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res58; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
ONLY='^jax/train/(lora-r8|flora-r8)@256$'
for v in "f32|" "xdtype|" "xdtype|--xla_gpu_dot_merger_threshold_mb=400" "xdtype|--xla_gpu_dot_merger_threshold_mb=4096"; do
  out=${v%%|*}; flags=${v#*|}; tag=$out${flags:+-${flags##*=}}
  TAP_OUT=$out XLA_FLAGS="$flags" timeout 110 python3 scratch_dev/ab/merge_ab.py --json $R/ab-$tag.json --suites train --train-batches 256 --only "$ONLY" 2>&1 | grep -E "img/s|rror|tap outputs"
  echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
done
XLA_FLAGS=--xla_gpu_dot_merger_threshold_mb=400 timeout 150 python3 -m bench.profile --cases lora-r8 --batch 256 --steps 5 --no-command-buffers --out $R/prof-merge400 2>&1 | grep -vE "Warning" | tail -25
echo "end at $SECONDS s"
rm -rf $R/prof-merge400/trace-*
cd $R && tar czf $OUT/res.tgz . && ls -R $R | head -30
