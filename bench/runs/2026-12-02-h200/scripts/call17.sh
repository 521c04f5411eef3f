python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res17; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
run() {  # tag batch only [prefix script]
  local tag=$1 b=$2 only=$3
  left=$(( 575 - SECONDS )); [ $left -lt 60 ] && { echo "skip $tag"; return; }
  timeout $left python3 -m bench.jax_suite --json $R/$tag.json --suites train \
     --train-batches $b --only "^jax/train/($only)@$b\$" 2>&1 | grep -E "img/s|Error" | sed "s/^/$tag /"
  echo "  at $SECONDS s"
}
run train256 256 "lora-r8|glora-supernet-k1|glora-supernet-k4|glora-fixed"
run train64 64 "lora-r8|glora-supernet-k1|glora-supernet-k4|glora-fixed"
left=$(( 575 - SECONDS ))
[ $left -gt 60 ] && GLORA_F32=1 timeout $left python3 scratch_dev/ab/f32_update_ab.py --json $R/fixed64-f32.json --suites train --train-batches 64 --only '^jax/train/(glora-fixed|lora-r8)@64$' 2>&1 | grep -E "img/s|Error|GLoRA" | sed "s/^/f32 /"
echo "end at $SECONDS s"
cd $R && tar czf $OUT/res.tgz . && ls $R
