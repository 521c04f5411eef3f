python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD:$PWD/scratch_dev/ab PYTHONUNBUFFERED=1
R=/tmp/res41; mkdir -p $R/every0 $R/every1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
for e in 0 1; do
  left=$(( 330 - SECONDS )); [ $left -lt 60 ] && { echo "skip $e"; continue; }
  EVERY_TOKEN=$e timeout $left python3 scratch_dev/ab/prune_profile.py --cases glora-fixed lora-r8 --batch 256 --top 0 --out $R/every$e 2>&1 | grep -vi warn | tail -12
  echo "  at $SECONDS s"
done
cd $R && tar czf $OUT/res.tgz . && ls -R $R | head -20
