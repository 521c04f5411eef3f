python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res86; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
pack() { echo "$1 t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
dump() { echo "--xla_gpu_dump_autotune_results_to=$R/autotune-$1.txt --xla_gpu_dump_autotune_logs_to=$R/autotune-logs-$1.txt"; }
A=scratch_dev/ab
run() { # name, extra env..., then the command
  local n=$1; shift
  env "$@" timeout 110 python3 $A/warm_ab.py --json $R/$n.json --suites conv --only '/flora-r8@' 2>&1 | grep -E "WARM|img/s|rror"
  (cd $A && python3 autotune_stalls.py $R/autotune-logs-$n.txt) | head -4
  pack $n
}
run 1-base XLA_FLAGS="$(dump 1-base)"
run 2-par1 XLA_FLAGS="$(dump 2-par1) --xla_gpu_force_compilation_parallelism=1"
run 3-eager XLA_FLAGS="$(dump 3-eager)" CUDA_MODULE_LOADING=EAGER
run 4-warm XLA_FLAGS="$(dump 4-warm)" WARM=1
