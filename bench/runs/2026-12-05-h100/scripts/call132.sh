# call 132 (prepared in the thirty-third session, split in two in the thirty-fourth; not yet run; copy to scratch_dev/ with scratch_dev/commit.txt): at 71f3deb or later, every training row at batch 64 (200 tokens in training since b91cebb/71f3deb) in one process, then GLoRA K=1 and the fixed subnet at 64 on 198 tokens (pad_length_ab.py PAD_TO=2: does GLoRA's weight-space step gain from 200 too?). Call 133 has the PyTorch rows at 64 and the A/B at 128.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res132; mkdir -p $R; END=${END:-580}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout $(left 330) python3 -m bench.jax_suite --suites train --train-batches 64 --json $R/1-jax64.json --only '^jax/train/(full|biases-only|lora-r8|flora-r8|glora-supernet-k1|glora-supernet-k4|glora-fixed)@64$' 2>&1 | grep -E "attention|img/s|rror"; save
PAD_TO=2 timeout $(left 240) python3 bench/runs/2026-12-05-h100/scripts/ab/pad_length_ab.py --suites train --train-batches 64 --json $R/2-pad2.json --only '^jax/train/(glora-supernet-k1|glora-fixed)@64$' 2>&1 | grep -E "PAD_TO|img/s|rror"; save
