python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res54; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 200 python3 -m bench.torch_peers --json $R/torch256.json --train-batches 256 --infer-batches 256 --warmup 5 --repeats 10 --input-sets 3 --window 5 2>&1 | tee $R/torch256.log | grep -E "img/s|Error"
echo "torch end at $SECONDS s"
(cd $R && tar czf $OUT/res.tgz .)
timeout 200 python3 -m bench.jax_suite --json $R/train256.json --suites train --train-batches 256 --only '^jax/train/(full|lora-r8|flora-r8|glora-supernet-k1)@256$' 2>&1 | grep -E "img/s|rror"
echo "t=$SECONDS"
(cd $R && tar czf $OUT/res.tgz .)
left=$(( 575 - SECONDS ))
[ $left -gt 60 ] && timeout $left python3 -m bench.jax_suite --json $R/train64.json --suites train --train-batches 64 --only '^jax/train/(lora-r8|flora-r8)@64$' 2>&1 | grep -E "img/s|rror"
echo "end at $SECONDS s"
cd $R && tar czf $OUT/res.tgz . && ls $R
