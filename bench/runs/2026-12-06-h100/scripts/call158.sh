# call 158 (forty-second session, 2026-12-06): 1. the whole GLoRA task on the scanned ViT with
# rematerialisation keeping the dense layers' outputs (call 156: 247.0 s scanned without remat;
# call 155: 277.0 s unrolled); 2. the GLoRA K=1 step at the task's batch of 64, unrolled, scanned,
# scanned + remat (dots without batch dims)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/ml_collections-*.whl .whl/tensorboardx-*.whl 2>/dev/null
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
R=$OUT
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
python3 -c "from pathlib import Path; from bench.end_to_end import vtab_shaped_npz; vtab_shaped_npz(Path('/tmp/task.npz'), test_size=10000)"
timeout 300 python3 -m bench.end_to_end --task /tmp/task.npz --workdir /tmp/e2e --out $R/1-e2e-scan-remat.json --set backbone.dtype=bfloat16 --set backbone.attention=cudnn --set backbone.scan=true --set backbone.remat=true --set backbone.remat_policy=dots_with_no_batch_dims_saveable > $R/1-e2e-scan-remat.log 2>&1; echo "exit $?"
grep -vE "it/s\]|s/it\]" $R/1-e2e-scan-remat.log | tail -4
timeout 200 python3 bench/runs/2026-12-06-h100/scripts/remat_rows.py $R/2-rows64.json glora-supernet-k1@64 --variants=unrolled,scan,scan-remat-dots-nb > $R/2-rows64.log 2>&1; echo "exit $?"
grep -v Warn $R/2-rows64.log | tail -4
