python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res94; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
for n in 1 2 3 4; do
  XLA_FLAGS="--xla_gpu_dump_autotune_results_to=$R/picks-$n.txt --xla_gpu_dump_autotune_logs_to=$R/logs-$n.txt" timeout 110 python3 -m bench.jax_suite --json $R/lora-$n.json --suites train --train-batches 256 --only '^jax/train/lora-r8@256$' 2>&1 | grep -E "img/s|rror"
  echo "$n t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
  [ $SECONDS -gt 420 ] && break
done
python3 -m bench.autotune_log $(for n in 1 2 3 4; do [ -f $R/logs-$n.txt ] && echo $R/logs-$n.txt:$R/picks-$n.txt; done) > $R/report.txt 2>&1; head -40 $R/report.txt
gzip -9 $R/logs-*.txt $R/picks-*.txt; (cd $R && tar czf $OUT/res.tgz .)
