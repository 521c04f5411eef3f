python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res50; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
TAP=pallas GROUP=2 timeout 170 python3 scratch_dev/ab/tap_ab.py --json $R/tap_pallas.json --suites train --train-batches 256 --only '^jax/train/(lora-r8|lora-r8-activation-prototype)@256$' 2>&1 | grep -E "TAP|img/s|rror"
echo "t=$SECONDS"
TAP=xla timeout 100 python3 scratch_dev/ab/tap_ab.py --json $R/tap_xla.json --suites train --train-batches 256 --only '^jax/train/lora-r8-activation-prototype@256$' 2>&1 | grep -E "TAP|img/s|rror"
echo "t=$SECONDS"
timeout 150 python3 scratch_dev/ab/pallas_lowrank.py --repeats 20 --json $R/pallas_a.json 2>&1 | grep -v Warning | tee $R/pallas_a.txt
echo "t=$SECONDS"
timeout 80 python3 scratch_dev/ab/pallas_lowrank.py --tokens 50432 --forms hybrid-pallas --bm 128 --group 2 --repeats 20 --json $R/pallas_b.json 2>&1 | grep -v Warning | tee $R/pallas_b.txt
echo "end at $SECONDS s"
cd $R && tar czf $OUT/res.tgz . && ls $R
