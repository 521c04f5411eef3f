# call 159 (forty-second session, 2026-12-06): the unrolled whole GLoRA task on call 158's machine,
# the baseline of its scanned + remat task (217.0 s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/ml_collections-*.whl .whl/tensorboardx-*.whl 2>/dev/null
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
R=$OUT
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
python3 -c "from pathlib import Path; from bench.end_to_end import vtab_shaped_npz; vtab_shaped_npz(Path('/tmp/task.npz'), test_size=10000)"
timeout 400 python3 -m bench.end_to_end --task /tmp/task.npz --workdir /tmp/e2e-unrolled --out $R/1-e2e-unrolled.json --set backbone.dtype=bfloat16 --set backbone.attention=cudnn > $R/1-e2e-unrolled.log 2>&1; echo "exit $?"
grep -vE "it/s\]|s/it\]" $R/1-e2e-unrolled.log | tail -4
