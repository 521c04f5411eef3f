# call 121: the spread of PEFT LoRA + torch.compile at 64: three processes, a fresh inductor cache, the cache as left, and after the eager row with a fresh cache (call 119's order)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res121; mkdir -p $R; END=${END:-580}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
P="python3 -m bench.torch_peers --train-batches 64 --infer-batches 64 --warmup 5 --repeats 10 --input-sets 3 --window 5"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind1 timeout $(left 70) $P --json $R/1-fresh.json --only '^torch/train/lora-r8-compile@' 2>&1 | grep -E "img/s|rror|took"; save
timeout $(left 40) $P --json $R/2-cached.json --only '^torch/train/lora-r8-compile@' 2>&1 | grep -E "img/s|rror|took"; save
TORCHINDUCTOR_CACHE_DIR=/tmp/ind2 timeout $(left 80) $P --json $R/3-after-eager.json --only '^torch/train/(lora-r8|lora-r8-compile)@' 2>&1 | grep -E "img/s|rror|took"; save
