python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res64; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
ONLY='^jax/train/(lora-r8|biases-only)@256$'
i=0
run() {  # name, timeout, flags
  i=$((i+1))
  XLA_FLAGS="$3" timeout $2 python3 -m bench.jax_suite --json $R/$i-$1.json --suites train --train-batches 256 --only "$ONLY" 2>&1 | grep -E "img/s|rror|nvalid|nknown"
  echo "$i $1 t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
}
run exhaustive-any 420 "--xla_gpu_exhaustive_tiling_search=true --xla_gpu_triton_gemm_any=true"
run default 120 ""
echo "end at $SECONDS s"
