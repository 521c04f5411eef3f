python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res65; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
( while sleep 30; do (cd $R && tar czf $OUT/res.tgz .); done ) &
timeout 540 python3 -m bench.run --suite=torch,train --train-batches 256 --only '/(lora-r8|flora-r8|glora-supernet-k1)(-compile)?@256$' --out $R/run.json 2>&1 | grep -vE "Warning|warn\(|it/s\]|s/it\]" | tail -40
echo "end at $SECONDS s"; (cd $R && tar czf $OUT/res.tgz .)
