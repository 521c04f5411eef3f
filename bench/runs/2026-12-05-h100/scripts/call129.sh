# call 129: at d472b13, LoRA and FLoRA at batch 64 with the tokens padded to 198 (PAD_TO=2, the code) and to 200 (PAD_TO=8), each one process, in the order 2, 8, 2, 8; then the 200-token LoRA profiled (are XLA's split-K pads gone?)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res129; mkdir -p $R; END=${END:-580}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz --exclude='trace-*' .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
AB=bench/runs/2026-12-05-h100/scripts/ab/pad_ab.py
for p in 2 8 2 8; do
  PAD_TO=$p timeout $(left 100) python3 $AB --suites train --train-batches 64 --json $R/1-pad$p-$SECONDS.json --only '^jax/train/(lora-r8|flora-r8)@64$' 2>&1 | grep -E "PAD_TO|img/s|rror"; save
done
