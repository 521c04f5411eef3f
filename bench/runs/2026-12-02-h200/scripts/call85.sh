python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res85; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
G=bench/runs/2026-12-02-h200/call84
pack() { echo "$1 t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
XLA_FLAGS="--xla_gpu_dump_autotune_results_to=$R/autotune-full.txt --xla_gpu_dump_autotune_logs_to=$R/autotune-logs-full.txt" timeout 150 python3 -m bench.jax_suite --json $R/1-full.json --suites conv --only '/full@' 2>&1 | grep -E "img/s|rror"
pack 1
XLA_FLAGS="--xla_gpu_dump_autotune_results_to=$R/autotune-fullflora.txt --xla_gpu_dump_autotune_logs_to=$R/autotune-logs-fullflora.txt" timeout 200 python3 -m bench.jax_suite --json $R/2-full-flora.json --suites conv --only '/(full|flora-r8)@' 2>&1 | grep -E "img/s|rror"
pack 2
python3 scratch_dev/ab/autotune_picks.py $G/autotune-logs-1.txt.gz:$G/autotune-1.txt.gz $R/autotune-logs-full.txt:$R/autotune-full.txt $R/autotune-logs-fullflora.txt:$R/autotune-fullflora.txt > $R/picks.txt 2>&1
grep -c "run" $R/picks.txt
for m in jaxnn erf; do
  GELU_EXACT=$m timeout 125 python3 scratch_dev/ab/gelu_exact_ab.py --json $R/3-gelu-$m.json --suites conv --only '/flora-r8@' 2>&1 | grep -E "GELU|img/s|rror"
  pack 3-$m
done
