# call 162 (forty-third session, 2026-12-06): call 160's scanned + remat profile again without
# XLA's CUDA graphs, so that its 240 memcpy kernels per step (5.4 ms) are given to HLO instructions
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/ml_collections-*.whl .whl/tensorboardx-*.whl 2>/dev/null
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
R=$OUT
nvidia-smi --query-gpu=name,uuid,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 200 python3 bench/runs/2026-12-06-h100/scripts/profile_scan.py /tmp/prof 256 --variant scan-remat-dots-nb --no-command-buffers > $R/profile.log 2>&1; echo "exit $?"
mkdir -p $R/scan-remat-dots-nb; cp /tmp/prof/scan-remat-dots-nb/*.json /tmp/prof/scan-remat-dots-nb/*.hlo.txt.gz $R/scan-remat-dots-nb/ 2>/dev/null
grep -v Warn $R/profile.log | grep -E "==|per step|^ +(gemm|attention|copy|fusion|other|conv)" | head -30
