# scratch_dev/ab/pad_grads.py as it was for this call: scripts/ab/pad_grads_call34.py
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
R=/tmp/res34; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 150 python3 scratch_dev/ab/pad_grads.py 2>&1 | grep -v -i warning | tee $R/pad_grads.txt
cd $R && tar czf $OUT/res.tgz . && ls $R
