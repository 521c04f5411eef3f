python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res20; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
ab() {  # tag groups batch only
  local tag=$1 g=$2 b=$3 only=$4
  left=$(( 570 - SECONDS )); [ $left -lt 70 ] && { echo "skip $tag"; return; }
  BIAS_GROUPS=$g timeout $left python3 scratch_dev/ab/bias_groups_ab.py --json $R/$tag.json --suites train \
     --train-batches $b --only "^jax/train/($only)@$b\$" 2>&1 | grep -E "img/s|Error|compile" | sed "s/^/$tag /"
  echo "  at $SECONDS s"
}
ab g4b64 4 64 "lora-r8|glora-supernet-k4|glora-supernet-k4-bias-groups"
ab g8b64 8 64 "glora-supernet-k4-bias-groups|glora-supernet-k4"
ab g4b256 4 256 "glora-supernet-k4|glora-supernet-k4-bias-groups"
echo "end at $SECONDS s"
cd $R && tar czf $OUT/res.tgz . && ls $R
