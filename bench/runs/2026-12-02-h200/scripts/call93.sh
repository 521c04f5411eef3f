# call 93: the micro only (cut by its timeout 220 after the first stage shape); rows only if a Pallas config beat lax (pick_dw.py): none did
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res92; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
A=bench/runs/2026-12-02-h200/scripts/ab
(cd $A && DW_CONFIGS="4096,32,4;8192,32,8;8192,64,8;16384,64,8;2048,32,4" timeout 220 python3 dwconv_pallas_ab.py --micro 2>&1 | grep -vE "algebraic|Delay" | tail -8) | tee $R/micro.txt
(cd $R && tar czf $OUT/res.tgz .)
C=$(python3 scratch_dev/pick_dw.py $R/micro.txt); echo "best: $C"
[ -n "$C" ] || exit 4
for m in pallas cudnn; do
  DW_CONFIG=$C DWCONV=$m timeout 125 python3 $A/dwconv_pallas_ab.py --json $R/flora-$m.json --suites conv --only '/flora-r8@' 2>&1 | grep -E "DWCONV|img/s|rror"
  echo "$m t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
done
