python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res14; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
run() {  # tag script only
  local tag=$1 script=$2 only=$3
  left=$(( 585 - SECONDS )); [ $left -lt 60 ] && { echo "skip $tag"; return; }
  timeout $left python3 $script --json $R/$tag.json --suites train \
     --train-batches 64 --only "^jax/train/($only)@64\$" 2>&1 | grep -E "img/s|Error|GLoRA" | sed "s/^/$tag /"
  echo "  at $SECONDS s"
}
run b64 "-m bench.jax_suite" "lora-r8|glora-supernet-k4"
GLORA_BF16=1 run k4-bf16-64 scratch_dev/ab/glora_bf16_ab.py "glora-supernet-k4"
left=$(( 585 - SECONDS ))
timeout $left python3 -m bench.profile --cases glora-supernet-k4 --batch 64 --top 0 --out $R/prof 2>&1 | tail -8
echo "profile at $SECONDS s"
cd $R && tar czf $OUT/res.tgz . && ls -R $R | head
