# call 133 (prepared in the thirty-fourth session from the second half of call 132; not yet run; copy to scratch_dev/ with scratch_dev/commit.txt): PEFT LoRA and GLoRA + torch.compile at 64 (50 ms windows), then LoRA and FLoRA at 128 on 198 tokens (PAD_TO=2) against the code's 200 (PAD_TO=8; calls 130-131 never ran 198 at 128)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res133; mkdir -p $R; END=${END:-580}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout $(left 150) python3 -m bench.torch_peers --json $R/3-torch64.json --train-batches 64 --infer-batches 64 --warmup 5 --repeats 10 --input-sets 3 --window 5 --min-window-ms 50 --only '^torch/train/(lora-r8-compile|glora-r8-compile)@' 2>&1 | grep -E "img/s|rror|took"; save
for p in 2 8; do
  PAD_TO=$p timeout $(left 100) python3 bench/runs/2026-12-05-h100/scripts/ab/pad_length_ab.py --suites train --train-batches 128 --json $R/4-pad$p-128.json --only '^jax/train/(lora-r8|flora-r8)@128$' 2>&1 | grep -E "PAD_TO|img/s|rror"; save
done
