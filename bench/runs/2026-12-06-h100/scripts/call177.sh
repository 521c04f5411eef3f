#!/usr/bin/env bash
# Call 177 (fifty-first session, 2026-12-07; the fiftieth could not start it): on the GPU backend (JAX_PLATFORMS unset; conftest.py's
# GPU defaults), test_activation_grads.py whole (the taps' weight-space fallback is new) and the
# other new tests of this session's code changes after call 176 (path patterns' flags, the config
# scorer, checkpoint, metrics, the head check, data loading); -v logs each outcome as it comes.
set -o pipefail
echo "tree $(cat scratch_dev/commit.txt)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/ml_collections-*.whl .whl/tensorboardx-*.whl scratch_dev/whl312/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,uuid,memory.total --format=csv,noheader | tee $OUT/device.txt
start=$(date +%s)
timeout 280 python3 -m pytest -n 14 -v --tb=short -p no:cacheprovider -p no:benchmark \
  tests/test_activation_grads.py tests/test_core.py::test_a_compiled_patterns_flags_are_kept \
  tests/test_supernet.py::test_config_scorer_equals_numpy_loop_over_configs \
  tests/test_training.py tests/test_checkpoint.py::test_restoring_a_step_that_was_never_saved_names_the_saved_steps \
  tests/test_data_folder.py tests/test_data_noah.py tests/test_backbones.py tests/test_evolution.py tests/test_efficientnet.py > $OUT/pytest.log 2>&1
echo "rc=$? wall=$(( $(date +%s) - start ))s" | tee -a $OUT/pytest.log
grep -E "^\[gw[0-9]+\] .*(FAILED|ERROR)" $OUT/pytest.log | head -20
grep -cE "^\[gw[0-9]+\] .*PASSED" $OUT/pytest.log
tail -3 $OUT/pytest.log
