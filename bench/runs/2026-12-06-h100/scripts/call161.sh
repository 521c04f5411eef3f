# call 161 (forty-third session, 2026-12-06): the `scan-remat` suite on the GPU as a suite
# (calls 157-158 timed the same programs through scripts/remat_rows.py), batch 256 (the
# device budget left no room for 64), with the unrolled twins in the same process for the ratios
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/ml_collections-*.whl .whl/tensorboardx-*.whl 2>/dev/null
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
R=$OUT
nvidia-smi --query-gpu=name,uuid,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 420 python3 -m bench.jax_suite --json $R/scan-remat.json --suites scan-remat train --train-batches 256 \
  --only '^jax/train(-scan-remat)?/(biases-only|lora-r8|flora-r8|glora-supernet-k1|glora-fixed)@256$' > $R/scan-remat.log 2>&1; echo "exit $?"
grep -vE "it/s\]|s/it\]" $R/scan-remat.log | tail -25
