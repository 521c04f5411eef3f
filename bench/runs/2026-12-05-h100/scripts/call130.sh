# call 130: at b91cebb (the cuDNN default pads to 200 tokens at 64 and 128 examples per device), LoRA and FLoRA at 64 and 128; the same at 128 padded to 198 (pad_ab.py PAD_TO=2, the code before); PEFT LoRA + torch.compile at 64 (50 ms windows): one machine
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res130; mkdir -p $R; END=${END:-580}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout $(left 150) python3 -m bench.jax_suite --suites train --train-batches 64 128 --json $R/1-jax.json --only '^jax/train/(lora-r8|flora-r8)@(64|128)$' 2>&1 | grep -E "attention|img/s|rror"; save
PAD_TO=2 timeout $(left 100) python3 bench/runs/2026-12-05-h100/scripts/ab/pad_ab.py --suites train --train-batches 128 --json $R/2-pad2.json --only '^jax/train/(lora-r8|flora-r8)@128$' 2>&1 | grep -E "PAD_TO|img/s|rror"; save
timeout $(left 100) python3 -m bench.torch_peers --json $R/3-torch.json --train-batches 64 --infer-batches 64 --warmup 5 --repeats 10 --input-sets 3 --window 5 --min-window-ms 50 --only '^torch/train/lora-r8-compile@' 2>&1 | grep -E "img/s|rror|took"; save
