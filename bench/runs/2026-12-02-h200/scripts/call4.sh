python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jcache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
R=/tmp/res; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
ROOT=$PWD
ab() {
  local dir=$1 tag=$2
  (cd $dir && PYTHONPATH=/tmp/site:$PWD timeout 100 python3 -m bench.jax_suite --json $R/ab-$tag.json \
     --suites train --train-batches 256 --only '^jax/train/lora-r8@256$' 2>&1 | grep "img/s" | sed "s/^/$tag /")
}
ab scratch_dev/ab/old old1
ab $ROOT new1
ab scratch_dev/ab/nogelu nogelu
ab scratch_dev/ab/nopatch nopatch
ab scratch_dev/ab/old old2
ab $ROOT new2
echo "A/B done at $SECONDS s"
left=$(( 500 - SECONDS ))
export PYTHONPATH=/tmp/site:$ROOT
timeout $left python3 -m bench.torch_peers --json $R/torch.json --train-batches 256 --infer-batches 256 64 1 \
  --warmup 5 --repeats 10 --input-sets 3 --window 5 2>&1 | grep -E "img/s|Error|error" | head -40
echo "torch done at $SECONDS s"
left=$(( 545 - SECONDS ))
[ $left -gt 20 ] && timeout $left python3 -m bench.jax_suite --json $R/infer.jax.json --suites infer 2>&1 | grep "img/s"
cd $R && tar czf $OUT/res.tgz . && ls -la $R
