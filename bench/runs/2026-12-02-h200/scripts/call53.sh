python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res53; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 240 python3 -m bench.jax_suite --json $R/train256.json --suites train --train-batches 256 --only '^jax/train/(lora-r8|flora-r8|flora-r8-weight)@256$' 2>&1 | grep -E "img/s|rror"
echo "t=$SECONDS"
(cd $R && tar czf $OUT/res.tgz .)
timeout 250 python3 -m bench.profile --cases lora-r8 biases-only --batch 256 --steps 5 --no-command-buffers --out $R/prof 2>&1 | grep -vE "Warning" | tail -40
echo "end at $SECONDS s"
rm -rf $R/prof/trace-*
cd $R && tar czf $OUT/res.tgz . && ls -R $R | head -20
