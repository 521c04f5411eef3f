set -x
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
XLA_FLAGS="--xla_dump_to=/tmp/dump" timeout 200 python3 -m bench.profile --cases lora-r8 glora-supernet-k4 \
   --batch 256 --top 0 --out $R/prof 2>&1 | grep -v -i warning | tail -30
(cd /tmp/dump && tar czf $R/dump.tgz $(ls -S | grep -E "jit_step.*after_optimizations.txt$" | head -4))
rm -rf $R/prof/trace-*
echo "profile done at $SECONDS s"
for v in cur autodiff sig32 sig16 tanh16 cur; do
  left=$(( 520 - SECONDS )); [ $left -lt 40 ] && break
  GELU=$v timeout $left python3 scratch_dev/gelu_ab.py --json $R/gelu-$v-$SECONDS.json --suites train \
     --train-batches 256 --only '^jax/train/lora-r8@256$' 2>&1 | grep "img/s" | sed "s/^/$v /"
done
left=$(( 580 - SECONDS ))
[ $left -gt 40 ] && XLA_FLAGS=--xla_gpu_enable_cublaslt=true GELU=cur timeout $left python3 scratch_dev/gelu_ab.py \
   --json $R/gelu-cublaslt.json --suites train --train-batches 256 --only '^jax/train/lora-r8@256$' 2>&1 | grep "img/s" | sed "s/^/cublaslt /"
cd $R && tar czf $OUT/res.tgz . && ls -la $R
