python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res60; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
THRESHOLD=320 timeout 250 python3 scratch_dev/ab/threshold_ab.py --json $R/conv320.json --suites conv --only '/flora-r8(-weight)?@' 2>&1 | grep -E "img/s|rror|MIN_TAP"
echo "end at $SECONDS s"
cd $R && tar czf $OUT/res.tgz .
