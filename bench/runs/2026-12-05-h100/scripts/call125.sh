# call 125: the train view's held kernels' U V batched over same-shaped layers against one product per layer (A/B, each form a process), LoRA and FLoRA at 64 and 256
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res125; mkdir -p $R; END=${END:-580}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
AB=bench/runs/2026-12-05-h100/scripts/ab/held_products_ab.py
for form in per-layer batched; do
  HELD_PRODUCTS=$form timeout $(left 200) python3 $AB --suites train --train-batches 64 256 --json $R/1-$form.json --only '^jax/train/(lora-r8|flora-r8)@(64|256)$' 2>&1 | grep -E "HELD|img/s|rror"; save
done
