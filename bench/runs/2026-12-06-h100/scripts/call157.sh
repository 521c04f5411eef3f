# call 157 (forty-second session, 2026-12-06): call 156's scanned GLoRA step ran at 0.67x the
# unrolled one with 27.0 GB against 14.8 GB: the loop saves every block's float32 norm
# intermediates. The GLoRA K=1 and LoRA steps at 256, unrolled, scanned, and scanned with each
# rematerialisation policy (backbone.remat_policy), one process
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/ml_collections-*.whl .whl/tensorboardx-*.whl 2>/dev/null
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
R=$OUT
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 540 python3 bench/runs/2026-12-06-h100/scripts/remat_rows.py $R/rows.json glora-supernet-k1@256 lora-r8@256 > $R/rows.log 2>&1; echo "exit $?"
grep -v Warn $R/rows.log | tail -14
