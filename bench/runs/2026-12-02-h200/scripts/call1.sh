set -x
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD:$PYTHONPATH PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
timeout 170 python3 scratch_dev/layer_bench.py 2>&1 | grep -v Warning
XLA_FLAGS="--xla_dump_to=/tmp/dump" timeout 300 python3 scratch_dev/prof_full.py 256 biases-only lora-r8 2>&1 | grep -v Warning
(cd /tmp/dump && tar czf $OUT/dump.tgz $(ls -S | grep -E "after_optimizations.txt$" | head -4))
ls -la $OUT
