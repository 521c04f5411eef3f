python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res97; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
# call 95's FLoRA picks (a fast process) pinned: does a process that loads them skip autotuning those
# instructions (no stalls possible) and run at call 95's 22.0 ms? Then, level 1-3 of the autotuner.
zcat "bench/runs/2026-12-02-h200/call95/autotune/jax_train-convnext-tiny_flora-r8@128.picks.txt.gz" > /tmp/good-picks.txt
for n in 1-load 2-load; do
  XLA_FLAGS="--xla_gpu_load_autotune_results_from=/tmp/good-picks.txt --xla_gpu_dump_autotune_logs_to=$R/logs-$n.txt" timeout 130 python3 -m bench.jax_suite --json $R/$n.json --suites conv --only '/flora-r8@' 2>&1 | grep -E "img/s|rror"
  echo "$n t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
done
for lvl in 1 3; do
  XLA_FLAGS="--xla_gpu_autotune_level=$lvl --xla_gpu_dump_autotune_results_to=$R/picks-l$lvl.txt --xla_gpu_dump_autotune_logs_to=$R/logs-l$lvl.txt" timeout 130 python3 -m bench.jax_suite --json $R/l$lvl.json --suites conv --only '/flora-r8@' 2>&1 | grep -E "img/s|rror"
  echo "level $lvl t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
done
python3 -m bench.autotune_log $R/logs-l1.txt:$R/picks-l1.txt $R/logs-l3.txt:$R/picks-l3.txt > $R/report.txt 2>&1; head -20 $R/report.txt; ls -la $R
gzip -9 $R/logs-*.txt $R/picks-*.txt; (cd $R && tar czf $OUT/res.tgz .)
