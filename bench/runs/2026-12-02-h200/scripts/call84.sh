python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res84; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
for i in 1 2; do
  XLA_FLAGS="--xla_gpu_dump_autotune_results_to=$R/autotune-$i.txt --xla_gpu_dump_autotune_logs_to=$R/autotune-logs-$i.txt" timeout 125 python3 -m bench.jax_suite --json $R/conv-$i.json --suites conv --only '/flora-r8@' 2>&1 | grep -E "img/s|rror"
  echo "$i t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
done
