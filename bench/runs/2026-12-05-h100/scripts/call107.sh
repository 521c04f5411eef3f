python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res107; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
# 1. a wider tile sweep around call 106's best (64,4,32,4,3)
timeout 120 python3 -m bench.tap_backward --json $R/1-tap.json --tiles 64,4,32,4,3 64,2,32,4,3 32,8,32,4,3 32,4,32,4,3 64,4,32,4,4 64,4,64,4,3 64,2,64,4,3 32,8,64,4,3 64,4,32,2,3 2>&1 | grep -vE "Delay kernel|^W1"
echo "tap t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
# 2. PEFT LoRA + torch.compile at 256 (the 1.5x peer) on this machine
timeout 120 python3 -m bench.torch_peers --json $R/2-torch.json --train-batches 256 --infer-batches 256 --warmup 5 --repeats 10 --input-sets 3 --window 5 --only '/lora-r8-compile@256$' 2>&1 | grep -E "img/s|rror|took"
echo "torch t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
# 3. LoRA/FLoRA: XLA tap; kernel with tiles 64,4,32,4,3 on every tapped layer; on fc1/fc2 only (width >= 3072); 
J='python3 -m bench.jax_suite --suites train --train-batches 256'
timeout 110 $J --json $R/3-xla.json --only '^jax/train/(lora-r8|flora-r8)@256$' 2>&1 | grep -E "img/s|rror"
ONE_READ_TILES=64,4,32,4,3 timeout 110 python3 scratch_dev/ab_pallas.py --suites train --train-batches 256 --json $R/4-all.json --only '^jax/train/(lora-r8-pallas|flora-r8-pallas)@256$' 2>&1 | grep -E "img/s|rror|TILES"
(cd $R && tar czf $OUT/res.tgz .)
ONE_READ_TILES=64,4,32,4,3 ONE_READ_MIN_WIDTH=3072 timeout $((500 - SECONDS)) python3 scratch_dev/ab_pallas.py --suites train --train-batches 256 --json $R/5-mlp.json --only '^jax/train/(lora-r8-pallas|flora-r8-pallas)@256$' 2>&1 | grep -E "img/s|rror|TILES"
(cd $R && tar czf $OUT/res.tgz .)
echo "end at $SECONDS s"
