python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res15; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
git log -1 --format=%h > $R/commit.txt 2>/dev/null
run() {  # tag batch only
  local tag=$1 b=$2 only=$3
  left=$(( 585 - SECONDS )); [ $left -lt 60 ] && { echo "skip $tag"; return; }
  timeout $left python3 -m bench.jax_suite --json $R/$tag.json --suites train \
     --train-batches $b --only "^jax/train/($only)@$b\$" 2>&1 | grep -E "img/s|Error" | sed "s/^/$tag /"
  echo "  at $SECONDS s"
}
run train256 256 "lora-r8|glora-supernet-k1|glora-supernet-k4|glora-fixed"
run train64 64 "lora-r8|glora-supernet-k1|glora-supernet-k4|glora-fixed"
left=$(( 585 - SECONDS ))
[ $left -gt 70 ] && timeout $left python3 -m bench.jax_suite --json $R/search.json --suites search 2>&1 | grep -E "cand|Error"
echo "search at $SECONDS s"
cd $R && tar czf $OUT/res.tgz . && ls $R
