python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res77; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 400 python3 -m bench.profile --model convnext --cases flora-r8 flora-r8-weight --batch 128 --steps 5 --top 0 --no-command-buffers --out $R/prof > $R/prof.txt 2>&1
grep -E "^==|per step|categor|gemm|rror" $R/prof.txt | head -20
rm -rf $R/prof/trace-*
echo "end at $SECONDS s"; (cd $R && tar czf $OUT/res.tgz .)
