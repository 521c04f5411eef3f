python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res88; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
for v in "1-level0 --xla_gpu_autotune_level=0" "2-nocudnn --xla_gpu_experimental_autotune_backends=-cudnn"; do
  set -- $v
  XLA_FLAGS="$2 --xla_gpu_dump_autotune_results_to=$R/autotune-$1.txt" timeout 118 python3 -m bench.jax_suite --json $R/$1.json --suites conv --only '/flora-r8@' 2>&1 | grep -E "img/s|rror|nvalid" | head -5
  echo "$1 t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
done
