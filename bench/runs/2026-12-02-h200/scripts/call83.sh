python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res83; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 420 python3 -m bench.jax_suite --json $R/conv.json --suites conv 2>&1 | grep -E "img/s|rror"
echo "conv t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
left=$(( 560 - SECONDS ))
[ $left -gt 60 ] && timeout $left python3 -m bench.jax_suite --json $R/vit.json --suites train --train-batches 256 --only '^jax/train/lora-r8@256$' 2>&1 | grep -E "img/s|rror"
echo "end at $SECONDS s"; (cd $R && tar czf $OUT/res.tgz .)
