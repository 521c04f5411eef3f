#!/usr/bin/env bash
# Call 183 (fifty-third session, 2026-12-07): on the GPU backend (JAX_PLATFORMS unset;
# conftest.py's GPU defaults), the test files of the code changed since call 182 (6774562):
# bench.targets.judged / peaks.card, bench.results.devices_of, evolution._state_path, the
# mutation audit's tests (CombinedSpace, ViT grid metadata, row_peaks, fits_backbone, search
# state), and the six tests call 182 did not reach (scale suite on two CPU devices, profile_diff).
set -o pipefail
echo "tree $(cat scratch_dev/commit.txt)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/ml_collections-*.whl .whl/tensorboardx-*.whl scratch_dev/whl312/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,uuid,memory.total --format=csv,noheader | tee $OUT/device.txt
start=$(date +%s)
timeout 420 python3 -m pytest -n 14 -v --tb=short -p no:cacheprovider -p no:benchmark \
  tests/test_bench.py tests/test_evolution.py tests/test_glora_space.py tests/test_vit.py \
  tests/test_bench_scaling.py tests/test_bench_cli.py tests/test_bench_profile_diff.py \
  "tests/test_vtab_cli.py::test_a_knob_no_adapted_layer_reads_is_refused_where_the_method_reads_it" \
  "tests/test_vtab_cli.py::test_a_search_state_of_another_val200_names_the_folders_to_delete" \
  "tests/test_vtab_cli.py::test_a_search_refuses_to_resume_on_other_val200_examples" \
  "tests/test_vtab_cli.py::test_method_knobs_the_method_does_not_read_are_refused" \
  > $OUT/pytest.log 2>&1
echo "rc=$? wall=$(( $(date +%s) - start ))s" | tee -a $OUT/pytest.log
grep -E "^\[gw[0-9]+\] .*(FAILED|ERROR)" $OUT/pytest.log | head -20
grep -cE "^\[gw[0-9]+\] .*PASSED" $OUT/pytest.log
grep -E "^(FAILED|ERROR) |^E  " $OUT/pytest.log | head -30
tail -3 $OUT/pytest.log
