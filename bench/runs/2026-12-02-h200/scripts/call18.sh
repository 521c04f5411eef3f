python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res18; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
for v in autodiff cur; do
  left=$(( 400 - SECONDS )); [ $left -lt 60 ] && break
  rm -rf /tmp/dump; XLA_FLAGS="--xla_gpu_enable_cublaslt=true --xla_dump_to=/tmp/dump" GELU=$v timeout $left python3 scratch_dev/ab/gelu_ab.py \
    --json $R/gelu-$v-cublaslt.json --suites train --train-batches 256 --only '^jax/train/lora-r8@256$' 2>&1 | grep -E "img/s|Error" | sed "s/^/$v+cublaslt /"
  f=$(ls -S /tmp/dump/*after_optimizations.txt 2>/dev/null | head -1)
  echo "$v: $(grep -c 'cublas\$lt\$matmul' $f) lt matmuls, epilogues: $(grep -oE '"epilogue":"[A-Z_]+"' $f | sort | uniq -c | tr '\n' ' ')"
  gzip -c $f > $R/hlo-$v-cublaslt.txt.gz
  echo "  at $SECONDS s"
done
left=$(( 585 - SECONDS ))
[ $left -gt 60 ] && timeout $left python3 -m bench.torch_peers --json $R/torch64.json --train-batches 64 --infer-batches 64 --warmup 5 --repeats 10 --input-sets 3 --window 5 2>&1 | grep -E "img/s|Error" | sed "s/^/torch /"
echo "end at $SECONDS s"
cd $R && tar czf $OUT/res.tgz . && ls $R
