python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res90; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
A=bench/runs/2026-12-02-h200/scripts/ab
for n in 1-cudnn 2-matmul 3-cudnn 4-matmul; do
  PATCHCONV=${n#*-} XLA_FLAGS="--xla_gpu_dump_autotune_results_to=$R/picks-$n.txt --xla_gpu_dump_autotune_logs_to=$R/logs-$n.txt" timeout 135 python3 $A/patchconv_ab.py --json $R/$n.json --suites conv --only '/flora-r8@' 2>&1 | grep -E "PATCH|img/s|rror"
  echo "$n t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
done
python3 -m bench.autotune_log $R/logs-1-cudnn.txt:$R/picks-1-cudnn.txt $R/logs-2-matmul.txt:$R/picks-2-matmul.txt $R/logs-3-cudnn.txt:$R/picks-3-cudnn.txt $R/logs-4-matmul.txt:$R/picks-4-matmul.txt > $R/report.txt 2>&1; head -30 $R/report.txt
gzip -9 $R/*.txt; (cd $R && tar czf $OUT/res.tgz .)
