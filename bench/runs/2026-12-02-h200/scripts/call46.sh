python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD:$PWD/scratch_dev/ab PYTHONUNBUFFERED=1
R=/tmp/res46; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt; cp scratch_dev/ab/bias_vjp_ab.py $R/
run() {  # mode, rows regex, seconds needed
  left=$(( 560 - SECONDS )); [ $left -lt $3 ] && { echo "skip $1 $2"; return; }
  BIAS=$1 timeout $left python3 scratch_dev/ab/bias_vjp_ab.py --json $R/$1.json --suites train --train-batches 256 --only "^jax/train/($2)@256\$" 2>&1 | grep -E "BIAS|img/s|rror"
  echo "  at $SECONDS s"
}
run code 'lora-r8|glora-fixed|glora-supernet-k1' 150
run flat 'glora-fixed|glora-supernet-k1' 110
run stop 'glora-fixed' 60
run ones 'glora-fixed|glora-supernet-k1' 110
run code 'glora-fixed' 60
echo "end at $SECONDS s"
cd $R && tar czf $OUT/res.tgz . && ls $R
