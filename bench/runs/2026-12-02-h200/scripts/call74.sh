python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res74; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 150 python3 scratch_dev/ab/gelu_grad_matmul.py --configs 'ws,128,128,64,3;ws,128,128,64,4;ws,128,128,64,2' > $R/micro-full.txt 2>&1
grep -v "^ *File\|^Traceback\|^    " $R/micro-full.txt | tail -12
echo "micro t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
best=$(python3 - $R/micro-full.txt <<'PY'
import re, sys
two = None; best = (9.0, "")
for line in open(sys.argv[1]):
    m = re.match(r"(.*?)\s+(\d+\.\d+) ms", line)
    if not m: continue
    if "two kernels" in m.group(1): two = float(m.group(2))
    elif m.group(1).startswith("mgpu ws"): best = min(best, (float(m.group(2)), m.group(1).split()[1]))
print(best[1].split(",")[4] if two and best[0] < two else "")
PY
)
[ -z "$best" ] && { echo "ws kernel not faster than XLA's two kernels: no A/B"; exit 0; }
echo "A/B with STEPS=$best"
i=0
for mode in fused cur; do
  [ $SECONDS -gt 300 ] && break
  i=$((i+1))
  STEPS=$best MLP_BWD=$mode timeout 100 python3 scratch_dev/ab/mlp_fused_ab.py --json $R/$i-$mode.json --suites train --train-batches 256 --only '^jax/train/lora-r8@256$' 2>&1 | grep -E "img/s|rror|MLP_BWD"
  echo "$i $mode t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
done
echo "end at $SECONDS s"
