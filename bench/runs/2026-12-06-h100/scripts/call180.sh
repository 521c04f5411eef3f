#!/usr/bin/env bash
# Call 180 (fifty-second session, 2026-12-07): on the GPU backend (JAX_PLATFORMS unset;
# conftest.py's GPU defaults), the test files of the code changed since call 178 (e524f01):
# CombinedSpace's int32 guard, the ViT checkpoint's patch grid, bench peaks and merged reports,
# the search state's val200 digest, the batch/subnets check, resume of moved own data.
set -o pipefail
echo "tree $(cat scratch_dev/commit.txt)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/ml_collections-*.whl .whl/tensorboardx-*.whl scratch_dev/whl312/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,uuid,memory.total --format=csv,noheader | tee $OUT/device.txt
start=$(date +%s)
timeout 420 python3 -m pytest -n 14 -v --tb=short -p no:cacheprovider -p no:benchmark \
  tests/test_glora_space.py tests/test_vit.py tests/test_bench.py tests/test_evolution.py \
  tests/test_training.py tests/test_sharding.py tests/test_methods.py tests/test_readme.py \
  "tests/test_vtab_cli.py::test_own_data_moved_or_named_relative_resumes_its_workdir" \
  "tests/test_vtab_cli.py::test_a_search_refuses_to_resume_on_other_val200_examples" \
  "tests/test_vtab_cli.py::test_subnets_per_step_of_a_method_without_a_supernet_leave_the_batch_free" \
  "tests/test_vtab_cli.py::test_method_knobs_the_method_does_not_read_are_refused" \
  "tests/test_vtab_cli.py::test_a_refused_resume_leaves_the_workdir_as_it_was" \
  > $OUT/pytest.log 2>&1
echo "rc=$? wall=$(( $(date +%s) - start ))s" | tee -a $OUT/pytest.log
grep -E "^\[gw[0-9]+\] .*(FAILED|ERROR)" $OUT/pytest.log | head -20
grep -cE "^\[gw[0-9]+\] .*PASSED" $OUT/pytest.log
tail -3 $OUT/pytest.log
