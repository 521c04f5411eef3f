python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res95; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
(while true; do sleep 20; (cd $R && tar czf $OUT/res.tgz .); done) &
timeout 330 python3 -m bench.jax_suite --json $R/conv-isolated.json --suites conv --isolate --autotune-logs $R/autotune --only '/(full|flora-r8|lora-r8-reshaped)@' 2>&1 | grep -vE "Delay kernel|^\s*$" | tail -30 | tee $R/log.txt
gzip -9 $R/autotune/*.txt 2>/dev/null; gunzip $R/autotune/report.txt.gz 2>/dev/null; (cd $R && tar czf $OUT/res.tgz .)
