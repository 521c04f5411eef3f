python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res48; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt; cp scratch_dev/ab/bias_gemv_ab.py $R/
for m in autodiff gemv; do
  left=$(( 540 - SECONDS )); [ $left -lt 100 ] && { echo "skip $m"; continue; }
  BIAS=$m timeout $left python3 scratch_dev/ab/bias_gemv_ab.py --json $R/$m.json --suites train --train-batches 256 --only '^jax/train/(full|biases-only|glora-supernet-k4)@256$' 2>&1 | grep -E "BIAS|img/s|rror"
  echo "  at $SECONDS s"
done
cd $R && tar czf $OUT/res.tgz . && ls $R
