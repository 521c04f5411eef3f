python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD:$PYTHONPATH PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $OUT/device.txt
date
timeout 310 python3 -m bench.jax_suite --json $OUT/train256.jax.json --suites train --train-batches 256 --only '^jax/train/(biases-only|lora-r8|flora-r8|full|linear|glora-supernet-k1|glora-supernet-k4|glora-fixed)@256$' 2>&1 | grep -v -i warning
date
timeout 150 python3 -m bench.jax_suite --json $OUT/train64.jax.json --suites train --train-batches 64 --only '^jax/train/(biases-only|lora-r8|flora-r8|glora-supernet-k1)@64$' 2>&1 | grep -v -i warning
date
timeout 90 python3 scratch_dev/prof_full.py 256 lora-r8 2>&1 | grep -v -i warning | head -60
