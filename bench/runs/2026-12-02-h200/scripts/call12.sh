python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res12; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
timeout 135 python3 -m bench.profile --no-command-buffers --cases glora-supernet-k4 --batch 256 --top 0 --out $R/prof 2>&1 | grep -A30 "by HLO"
echo "profile at $SECONDS s"
rm -rf $R/prof/trace-*; cd $R && tar czf $OUT/res.tgz . && ls -R $R | head
