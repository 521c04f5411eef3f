# call 165 (forty-fourth session, 2026-12-06; run 2026-12-07 UTC): the remat policy that also keeps cuDNN attention's
# results (dots_with_no_batch_dims_and_attention_saveable) against the one the scan-remat suite
# uses, with the unrolled rows in the same process for the ratios, batch 256, nvidia-h100-x1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/ml_collections-*.whl .whl/tensorboardx-*.whl 2>/dev/null
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
R=$OUT
nvidia-smi --query-gpu=name,uuid,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 540 python3 bench/runs/2026-12-06-h100/scripts/remat_rows.py $R/rows.json \
  glora-supernet-k1@256 lora-r8@256 biases-only@256 \
  --variants=scan-remat-dots-nb,scan-remat-attn,unrolled > $R/rows.log 2>&1; echo "exit $?"
grep -vE "it/s\]|s/it\]" $R/rows.log | tail -25
