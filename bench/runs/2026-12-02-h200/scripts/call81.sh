python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res81; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 230 python3 -m bench.jax_suite --json $R/conv.json --suites conv --only '/(full|flora-r8|lora-r8-reshaped)@' 2>&1 | grep -E "img/s|rror"
echo "conv t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
timeout 150 python3 -m bench.profile --model convnext --cases flora-r8 --batch 128 --steps 5 --top 0 --no-command-buffers --out $R/prof > $R/prof.txt 2>&1
grep -E "^==|per step|categor|conv|rror" $R/prof.txt | head -20; rm -rf $R/prof/trace-*
echo "prof t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
for m in shift shift-all; do
  left=$(( 575 - SECONDS )); [ $left -gt 50 ] || break
  DWCONV=$m timeout $(( left < 110 ? left : 110 )) python3 scratch_dev/ab/dwconv_ab.py --json $R/conv-$m.json --suites conv --only '/flora-r8@' 2>&1 | grep -E "DWCONV|img/s|rror"
  echo "$m t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
done
echo "end at $SECONDS s"
