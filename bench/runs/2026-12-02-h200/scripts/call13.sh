python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res13; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
run() {  # tag flags script only
  local tag=$1 flags=$2 script=$3 only=$4
  left=$(( 580 - SECONDS )); [ $left -lt 60 ] && { echo "skip $tag"; return; }
  XLA_FLAGS="$flags" timeout $left python3 $script --json $R/$tag.json --suites train \
     --train-batches 256 --only "^jax/train/($only)@256\$" 2>&1 | grep -E "img/s|Error|GLoRA" | sed "s/^/$tag /"
  echo "  at $SECONDS s"
}
run default "" "-m bench.jax_suite" "lora-r8|glora-supernet-k4"
run cublaslt "--xla_gpu_enable_cublaslt=true" "-m bench.jax_suite" "lora-r8|glora-supernet-k4"
GLORA_BF16=1 run k4-bf16 "" scratch_dev/ab/glora_bf16_ab.py "glora-supernet-k4"
cd $R && tar czf $OUT/res.tgz . && ls $R
