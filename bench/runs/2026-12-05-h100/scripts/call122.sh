# call 122: the train view's held-kernel form A/B (weight_apply's form vs W0 + U V from the taps' factors), LoRA and FLoRA at 64 and 256, each form a process; then merged vs plain inference with the 50 ms windows
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res122; mkdir -p $R; END=${END:-580}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
AB=bench/runs/2026-12-05-h100/scripts/ab/view_form_ab.py
for form in apply factors; do
  VIEW_FORM=$form timeout $(left 190) python3 $AB --suites train --train-batches 64 256 --json $R/1-view-$form.json --only '^jax/train/(lora-r8|flora-r8)@(64|256)$' 2>&1 | grep -E "VIEW|img/s|rror"; save
done
timeout $(left 200) python3 -m bench.jax_suite --suites infer --json $R/2-infer.json 2>&1 | grep -E "img/s|rror"; save
