python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
git log -1 --format=%h > $R/commit.txt 2>/dev/null
row() {  # tag OVER_LAYERS row
  local tag=$1 form=$2 only=$3
  left=$(( 575 - SECONDS )); [ $left -lt 50 ] && { echo "skip $tag"; return; }
  OVER_LAYERS=$form timeout $left python3 scratch_dev/ab/layers_ab.py --json $R/$tag.json --suites train \
     --train-batches 256 --only "^jax/train/$only@256\$" 2>&1 | grep -E "img/s|Error" | sed "s/^/$tag /"
  echo "  at $SECONDS s"
}

row k1-split split glora-supernet-k1
row flora-split split flora-r8
row flora-index index flora-r8
XLA_FLAGS=--xla_gpu_enable_triton_gemm=false row k4-split-notriton split glora-supernet-k4
row lora2 split lora-r8
cd $R && tar czf $OUT/res.tgz . && ls $R
