# call 131: at b91cebb, LoRA and FLoRA at 128 padded to 198 (PAD_TO=2) then to 200 (PAD_TO=8, what b91cebb's default picks at 128), each one process: call 130 ran them in the other order (200 first, the FLoRA row cut by the time limit)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res131; mkdir -p $R; END=${END:-580}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
for p in 2 8; do
  PAD_TO=$p timeout $(left 110) python3 bench/runs/2026-12-05-h100/scripts/ab/pad_ab.py --suites train --train-batches 128 --json $R/1-pad$p.json --only '^jax/train/(lora-r8|flora-r8)@128$' 2>&1 | grep -E "PAD_TO|img/s|rror"; save
done
