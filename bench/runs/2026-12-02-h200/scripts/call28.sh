python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res28; mkdir -p $R
cat scratch_dev/commit.txt > $R/commit.txt
i=0
for v in exp32 cur exp32 cur; do
  i=$((i+1)); left=$(( 330 - SECONDS )); [ $left -lt 60 ] && { echo "skip $v"; continue; }
  PAD_TO=16 GELU=$v timeout $left python3 scratch_dev/ab/step_ab.py --json $R/ab$i-$v.json --suites train --train-batches 256 \
     --only '^jax/train/lora-r8@256$' 2>&1 | grep -E "PAD|img/s|rror:" | sed "s/^/ab$i /"
  echo "  at $SECONDS s"
done
cd $R && tar czf $OUT/res.tgz . && ls $R
