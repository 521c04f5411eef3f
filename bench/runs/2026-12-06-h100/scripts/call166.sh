# call 166 (forty-fourth session, 2026-12-06/07): call 160's profile of the GLoRA K=1 step at 256,
# scanned + remat with the dense outputs kept against the policy that also keeps cuDNN
# attention's results (call 165 timed +0.8% for it, against the 3.1 ms call 160 put on attention)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/ml_collections-*.whl .whl/tensorboardx-*.whl 2>/dev/null
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
R=$OUT
nvidia-smi --query-gpu=name,uuid,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 270 python3 bench/runs/2026-12-06-h100/scripts/profile_scan.py /tmp/prof 256 --variant scan-remat-dots-nb --variant scan-remat-attn > $R/profile.log 2>&1; echo "exit $?"
for v in scan-remat-dots-nb scan-remat-attn; do mkdir -p $R/$v; cp /tmp/prof/$v/*.json $R/$v/ 2>/dev/null; done
grep -v Warn $R/profile.log | grep -E "==|per step|^ +(gemm|attention|copy|fusion|other|conv)" | head -30
