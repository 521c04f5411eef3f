#!/usr/bin/env bash
# Call 149: what a cuDNN ViT does on the CPU under jax 0.11.2 with the CUDA plugin, then the
# suite again at the fixed tree on the GPU machine's software (JAX_PLATFORMS=cpu, -n 16).
set -o pipefail
echo "tree $(cat scratch_dev/commit.txt)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/ml_collections-*.whl .whl/tensorboardx-*.whl scratch_dev/whl312/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1
python3 scratch_dev/cudnn_on_cpu_probe.py 2>&1 | grep -v Warning | tee $OUT/cudnn_probe.txt
start=$(date +%s)
timeout 480 python3 -m pytest -n 16 --durations=15 -p no:cacheprovider tests 2>&1 | tee $OUT/pytest.log
echo "rc=$? wall=$(( $(date +%s) - start ))s" | tee -a $OUT/pytest.log
