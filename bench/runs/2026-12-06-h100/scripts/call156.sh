# call 156 (forty-first session, 2026-12-06): the scanned ViT (backbone.scan=true, the 12 blocks one nn.scan)
# on the GPU, never timed there: the GLoRA supernet K=1 step at 256, unrolled and scanned, with their
# compile times (call 155's whole task spent 54 s on its first train step, mostly compiling)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/ml_collections-*.whl .whl/tensorboardx-*.whl 2>/dev/null
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
R=$OUT
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 300 python3 -m bench.jax_suite --json $R/1-train.json --suites scan train --train-batches 256 --only 'glora-supernet-k1@256' > $R/1-train.log 2>&1; echo "exit $?"
grep -vE "it/s\]|s/it\]" $R/1-train.log | tail -6

