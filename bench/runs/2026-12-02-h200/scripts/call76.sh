python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res76; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 90 python3 scratch_dev/ab/gelu_grad_matmul.py --configs 'wsapprox,128,128,64,2,1;wsgemm,128,128,64,2,1;wsapprox,128,128,64,2' > $R/micro-wgs1.txt 2>&1
grep -v "^ *File\|^Traceback\|^    " $R/micro-wgs1.txt | tail -8
echo "micro t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
timeout 220 python3 -m bench.jax_suite --json $R/conv.json --suites conv --only '/flora-r8(-weight|-tap-all)?@' 2>&1 | grep -E "img/s|rror"
echo "conv t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
left=$(( 560 - SECONDS ))
[ $left -gt 60 ] && timeout $left python3 -m bench.jax_suite --json $R/vit.json --suites train --train-batches 256 64 --only '^jax/train/(lora-r8|flora-r8)@(256|64)$' 2>&1 | grep -E "img/s|rror"
echo "end at $SECONDS s"; (cd $R && tar czf $OUT/res.tgz .)
