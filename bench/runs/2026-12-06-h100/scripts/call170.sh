#!/usr/bin/env bash
# Call 170 (forty-seventh session, 2026-12-07): (1) the activation taps of the working tree (committed in 9395f15; scratch_dev/commit.txt said
# 37646c6, which lacked peft_core/activation_grads.py), which pass the
# layer's output through (tap(y, x, U, V, offset) -> y) instead of adding a zero to it, against
# the earlier taps (scratch_dev/ab/activation_grads_452e316.py = `git show
# 452e316:peft_core/activation_grads.py`, swapped in for peft_core/activation_grads.py), LoRA r=8
# and FLoRA r=8 at 256, in turn new, old, new, each one process; (2) the test files changed since
# call 169 on the machine's jax 0.11.2 / flax 0.12.10 (its CPU, as CI), with the three call 169
# failed.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/ml_collections-*.whl .whl/tensorboardx-*.whl scratch_dev/whl312/*.whl 2>/dev/null
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
R=$OUT
nvidia-smi --query-gpu=name,uuid,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
cp peft_core/activation_grads.py /tmp/activation_grads_new.py
run() {  # $1: label
  timeout 150 python3 -m bench.jax_suite --json $R/taps-$1.json --suites train --train-batches 256 \
    --only '^jax/train/(lora-r8|flora-r8)@256$' > $R/taps-$1.log 2>&1; echo "$1 exit $?"
  grep -E "^jax/train" $R/taps-$1.log | head -4
}
run new1
cp scratch_dev/ab/activation_grads_452e316.py peft_core/activation_grads.py; run old
cp /tmp/activation_grads_new.py peft_core/activation_grads.py; run new2
export JAX_PLATFORMS=cpu
timeout 200 python3 -m pytest -n 14 --tb=short -p no:cacheprovider -q tests/test_activation_grads.py \
  tests/test_one_read.py tests/test_vit.py tests/test_convnext.py tests/test_efficientnet.py \
  tests/test_torch_zip.py tests/test_weights_cli.py tests/test_bench_scaling.py > $R/pytest.log 2>&1
echo "pytest rc=$?"; grep -E "^(FAILED|ERROR)" $R/pytest.log | head; tail -1 $R/pytest.log
