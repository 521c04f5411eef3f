python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
row() {  # tag env row
  local tag=$1 envs=$2 only=$3
  left=$(( 575 - SECONDS )); [ $left -lt 50 ] && { echo "skip $tag"; return; }
  env $envs timeout $left python3 scratch_dev/qkv_ab.py --json $R/$tag.json --suites train \
     --train-batches 256 --only "^jax/train/$only@256\$" 2>&1 | grep "img/s" | sed "s/^/$tag /"
  echo "  at $SECONDS s"
}
row lora "X=0" lora-r8
row k4 "X=0" glora-supernet-k4
row k4bf16 "GLORA_BF16=1" glora-supernet-k4
row qkvlora "FUSED_QKV=1" lora-r8
row k1bf16 "GLORA_BF16=1" glora-supernet-k1
row k1 "X=0" glora-supernet-k1
cd $R && tar czf $OUT/res.tgz . && ls $R
