python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res96; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 300 python3 -m bench.jax_suite --json $R/train.json --suites train --train-batches 256 --only '^jax/train/(lora-r8|lora-r8-weight|glora-supernet-k1|glora-fixed)@256$' 2>&1 | grep -E "img/s|rror"
(cd $R && tar czf $OUT/res.tgz .)
timeout 270 python3 -m bench.profile --cases glora-supernet-k1 lora-r8-weight --batch 256 --steps 5 --top 0 --no-command-buffers --out $R/prof > $R/prof.txt 2>&1
grep -E "^==|per step|categor|gemm|rror" $R/prof.txt | head -20
rm -rf $R/prof/trace-*
echo "end at $SECONDS s"; (cd $R && tar czf $OUT/res.tgz .)
