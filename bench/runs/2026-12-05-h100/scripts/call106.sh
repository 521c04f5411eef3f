python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res106; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
# 1. the one-read kernel (grads='pallas') against the XLA tap on ViT-B's layer shapes at 256 images: correctness + tiles
timeout 200 python3 -m bench.tap_backward --json $R/1-tap.json 2>&1 | grep -vE "Delay kernel|^W1"
echo "tap t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
# 2. PEFT LoRA + torch.compile at 256 (the 1.5x target's peer), then our LoRA / FLoRA with and without the kernel
timeout 120 python3 -m bench.torch_peers --json $R/2-torch.json --train-batches 256 --infer-batches 256 --warmup 5 --repeats 10 --input-sets 3 --window 5 --only '/lora-r8-compile@256$' 2>&1 | grep -E "img/s|rror|took"
echo "torch t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
timeout $((560 - SECONDS)) python3 -m bench.jax_suite --json $R/3-train.json --suites train --train-batches 256 --only '^jax/train/(lora-r8|lora-r8-pallas|flora-r8|flora-r8-pallas)@256$' 2>&1 | grep -E "img/s|rror"
echo "end at $SECONDS s"; (cd $R && tar czf $OUT/res.tgz .)
