# call 126: FLoRA at 64 (factors batched, c6a7fc2) and PEFT LoRA + torch.compile at 64 alone, on one machine (the session's last 258 s of device time)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res126; mkdir -p $R; END=${END:-580}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout $(left 85) python3 -m bench.jax_suite --suites train --train-batches 64 --json $R/1-flora64.json --only '^jax/train/flora-r8@64$' 2>&1 | grep -E "img/s|rror"; save
timeout $(left 90) python3 -m bench.torch_peers --json $R/2-torch64.json --train-batches 64 --infer-batches 64 --warmup 5 --repeats 10 --input-sets 3 --window 5 --min-window-ms 50 --only '^torch/train/lora-r8-compile@' 2>&1 | grep -E "img/s|rror|took"; save
