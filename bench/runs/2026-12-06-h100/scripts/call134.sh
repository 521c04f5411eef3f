# call 134 (prepared in the thirty-fourth session, not yet run; for an nvidia-h200: copy to scratch_dev/ with scratch_dev/commit.txt): at 4bd255c or later (FLoRA core side batched since 1cfd178, 200 tokens in training at 64 since b91cebb), LoRA and FLoRA at 64 and 256 and PEFT LoRA + torch.compile at 64 and 256 (50 ms windows) on one H200: the 1.5x target's ratios there (call 110, before both: 1.45x / 1.43x at 256)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res134; mkdir -p $R; END=${END:-580}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout $(left 200) python3 -m bench.jax_suite --suites train --train-batches 64 256 --json $R/1-jax.json --only '^jax/train/(lora-r8|flora-r8)@(64|256)$' 2>&1 | grep -E "img/s|rror"; save
timeout $(left 200) python3 -m bench.torch_peers --json $R/2-torch.json --train-batches 64 256 --infer-batches 64 --warmup 5 --repeats 10 --input-sets 3 --window 5 --min-window-ms 50 --only '^torch/train/lora-r8-compile@' 2>&1 | grep -E "img/s|rror|took"; save
