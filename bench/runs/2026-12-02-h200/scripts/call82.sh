python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res82; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
ab() {  # name, DWPAD, XLA_FLAGS, timeout
  DWPAD=$2 XLA_FLAGS="$3" timeout $4 python3 scratch_dev/ab/dwpad_ab.py --json $R/$1.json --suites conv --only '/flora-r8@' 2>&1 | grep -E "DWPAD|img/s|rror"
  echo "$1 t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
}
ab 1-plain plain "" 110
ab 2-padded padded "" 110
ab 3-padded-nocb padded "--xla_gpu_enable_command_buffer=" 110
ab 4-plain-nocb plain "--xla_gpu_enable_command_buffer=" 110
left=$(( 575 - SECONDS ))
[ $left -gt 60 ] && timeout $left python3 -m bench.profile --model convnext --cases flora-r8 --batch 128 --steps 5 --top 0 --out $R/prof-cb > $R/prof-cb.txt 2>&1
grep -E "^==|per step|categor|rror" $R/prof-cb.txt | head -8; rm -rf $R/prof-cb/trace-*
echo "end at $SECONDS s"; (cd $R && tar czf $OUT/res.tgz .)
