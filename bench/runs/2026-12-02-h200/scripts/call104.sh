python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res104; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
# ConvNeXt-T's weight-space and tap-all rows at HEAD, one process each (the current table still has call 87's)
(while true; do sleep 20; (cd $R && tar czf $OUT/res.tgz .); done) &
timeout 330 python3 -m bench.jax_suite --json $R/conv-isolated.json --suites conv --isolate --autotune-logs $R/autotune --only '/(flora-r8-weight|flora-r8-tap-all|lora-r8-reshaped-weight)@' 2>&1 | grep -vE "Delay kernel|^\s*$" | tail -30 | tee $R/log.txt
gzip -9 $R/autotune/*.txt 2>/dev/null; gunzip $R/autotune/report.txt.gz 2>/dev/null; (cd $R && tar czf $OUT/res.tgz .)
