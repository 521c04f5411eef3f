python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res31; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
left=$(( 560 - SECONDS ))
timeout $left python3 -m bench.torch_peers --json $R/torch256.json --train-batches 256 --infer-batches 256 --warmup 5 --repeats 10 --input-sets 3 --window 5 2>&1 | tee $R/torch256.log | grep -E "img/s|Error"
echo "end at $SECONDS s"
cd $R && tar czf $OUT/res.tgz . && ls $R
