python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res103; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
# GLoRA K=1's q/k/v weight gradients run as 4-way split-K Triton GEMMs whose f32 partials a 0.56 ms fusion sums (call 96):
# without split-K autotuning, and without reduction epilogue fusion, against the default (one process per setting)
timeout 560 python3 -m bench.xla_flags --only '^jax/train/(glora-supernet-k1|lora-r8-weight)@256$' --suites train --out $R/flags.json \
  --variant default= --variant no-split-k=--xla_gpu_enable_split_k_autotuning=false \
  --variant no-reduction-epilogue=--xla_gpu_enable_reduction_epilogue_fusion=false --variant default2= 2>&1 | grep -vE "Delay kernel|^W1" | tail -20
echo "end t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
