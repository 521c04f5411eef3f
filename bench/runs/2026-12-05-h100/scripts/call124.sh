# call 124: FLoRA's tap factors batched over same-shaped layers against one product per layer (A/B, each form a process, the per-layer form first and last), FLoRA at 64 and 256; then both profiled at 64
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res124; mkdir -p $R; END=${END:-580}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz --exclude='trace-*' .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
AB=bench/runs/2026-12-05-h100/scripts/ab/flora_factors_ab.py
for form in per-layer batched per-layer; do
  FLORA_FACTORS=$form timeout $(left 130) python3 $AB --suites train --train-batches 64 256 --json $R/1-$form-$SECONDS.json --only '^jax/train/(flora-r8)@(64|256)$' 2>&1 | grep -E "FLORA|img/s|rror"; save
done
timeout $(left 120) python3 -m bench.profile --cases flora-r8 --batch 64 --steps 5 --top 0 --no-command-buffers --out $R/prof64 2>&1 | grep -E "^==|per step|gemm"; rm -rf $R/prof64/trace-*; save
