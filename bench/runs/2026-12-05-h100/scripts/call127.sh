# call 127 (prepared in the thirty-second session, run in the thirty-third on machine CA): 1cfd178's FLoRA factors (only the core's side batched) against one product per layer (A/B, each form a process, per-layer first and last: call 124 measured d8e10bb's batched form -0.43 ms at 64 this way), then FLoRA and LoRA profiled at 64 (is call 124's 0.39 ms Adam fusion gone?)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res127; mkdir -p $R; END=${END:-580}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz --exclude='trace-*' .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
AB=bench/runs/2026-12-05-h100/scripts/ab/flora_factors_ab.py
for form in per-layer batched per-layer; do
  FLORA_FACTORS=$form timeout $(left 130) python3 $AB --suites train --train-batches 64 256 --json $R/1-$form-$SECONDS.json --only '^jax/train/(flora-r8)@(64|256)$' 2>&1 | grep -E "FLORA|img/s|rror"; save
done
timeout $(left 150) python3 -m bench.profile --cases flora-r8 lora-r8 --batch 64 --steps 5 --top 0 --no-command-buffers --out $R/prof64 2>&1 | grep -E "^==|per step|gemm "; rm -rf $R/prof64/trace-*; save
