python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
timeout 200 python3 -m bench.jax_suite --json $R/search.jax.json --suites search 2>&1 | grep -E "cand/s|img/s|Error"
echo "search at $SECONDS s"
left=$(( 370 - SECONDS ))
[ $left -gt 60 ] && timeout $left python3 -m bench.jax_suite --json $R/conv.jax.json --suites conv 2>&1 | grep -E "img/s|Error"
echo "conv at $SECONDS s"
cd $R && tar czf $OUT/res.tgz . && ls $R
