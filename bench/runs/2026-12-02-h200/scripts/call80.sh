python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res80; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 170 python3 -m bench.torch_peers --json $R/1-torch64.json --train-batches 64 --infer-batches 64 --warmup 5 --repeats 10 --input-sets 3 --window 5 --only '/(lora-r8|glora-r8)-compile@64$' 2>&1 | grep -E "img/s|rror|took"
echo "torch t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
timeout $((570 - SECONDS)) python3 -m bench.jax_suite --json $R/2-train64.json --suites train --train-batches 64 --only '^jax/train/(lora-r8|flora-r8|glora-supernet-k1|glora-supernet-k4|glora-fixed|biases-only|full)@64$' 2>&1 | grep -E "img/s|rror"
echo "end at $SECONDS s"; (cd $R && tar czf $OUT/res.tgz .)
