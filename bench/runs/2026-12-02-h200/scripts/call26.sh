python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res26; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 90 python3 scratch_dev/ab/gelu_micro.py 2>&1 | tee $R/gelu_micro.txt
echo "  at $SECONDS s"
i=0
for v in "16 cur" "1 cur" "16 exp32" "16 cur"; do
  set -- $v; i=$((i+1))
  left=$(( 470 - SECONDS )); [ $left -lt 60 ] && { echo "skip $v"; continue; }
  PAD_TO=$1 GELU=$2 timeout $left python3 scratch_dev/ab/step_ab.py --json $R/ab$i-pad$1-$2.json --suites train --train-batches 256 \
     --only '^jax/train/lora-r8@256$' 2>&1 | grep -E "PAD|img/s|Error|rror:" | sed "s/^/ab$i /"
  echo "  at $SECONDS s"
done
left=$(( 580 - SECONDS ))
[ $left -gt 60 ] && timeout $left python3 -m bench.jax_suite --json $R/infer.json --suites infer 2>&1 | grep -E "img/s|Error"
echo "end at $SECONDS s"
cd $R && tar czf $OUT/res.tgz . && ls $R
