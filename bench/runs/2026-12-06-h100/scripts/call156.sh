# call 156 (forty-second session, 2026-12-06; written in the forty-first, which got no machine): the
# scanned ViT (backbone.scan=true, the 12 blocks one nn.scan) on the GPU, never timed there:
# 1. the GLoRA supernet K=1 step at 256, unrolled and scanned, with their compile times;
# 2. the whole GLoRA task on the scanned ViT (call 155's unrolled task spent 54 s on its first
#    train step, mostly compiling)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/ml_collections-*.whl .whl/tensorboardx-*.whl 2>/dev/null
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
R=$OUT
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 230 python3 -m bench.jax_suite --json $R/1-train.json --suites scan train --train-batches 256 --only 'glora-supernet-k1@256' > $R/1-train.log 2>&1; echo "exit $?"
grep -vE "it/s\]|s/it\]" $R/1-train.log | tail -6
python3 -c "from pathlib import Path; from bench.end_to_end import vtab_shaped_npz; vtab_shaped_npz(Path('/tmp/task.npz'), test_size=10000)"
timeout 320 python3 -m bench.end_to_end --task /tmp/task.npz --workdir /tmp/e2e --out $R/2-e2e-scan.json --set backbone.dtype=bfloat16 --set backbone.attention=cudnn --set backbone.scan=true > $R/2-e2e-scan.log 2>&1; echo "exit $?"
grep -vE "it/s\]|s/it\]" $R/2-e2e-scan.log | tail -8
