python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res79; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 150 python3 scratch_dev/ab/cond_micro.py > $R/cond-default.txt 2>&1; tail -8 $R/cond-default.txt
echo "default t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
XLA_FLAGS=--xla_gpu_enable_command_buffer= timeout 150 python3 scratch_dev/ab/cond_micro.py > $R/cond-nographs.txt 2>&1; tail -6 $R/cond-nographs.txt
echo "end at $SECONDS s"; (cd $R && tar czf $OUT/res.tgz .)
