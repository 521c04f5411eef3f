# call 167 (forty-fifth session, 2026-12-07): call 166's two profiles again without XLA's command
# buffers (CUDA graphs), so that each instruction gets its own time; then
# `python -m bench.profile_diff call167/scan-remat-dots-nb/glora-supernet-k1.json
#  call167/scan-remat-attn/glora-supernet-k1.json --top 0` (on the CPU machine: call167/diff.txt)
mkdir -p $OUT/nocb; nvidia-smi --query-gpu=name,uuid --format=csv > $OUT/device.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/ml_collections-*.whl .whl/tensorboardx-*.whl 2>/dev/null
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
timeout 200 python3 bench/runs/2026-12-06-h100/scripts/profile_scan.py /tmp/prof2 256 --variant scan-remat-dots-nb --variant scan-remat-attn --no-command-buffers > $OUT/profile.log 2>&1; echo "exit $?"
for v in scan-remat-dots-nb scan-remat-attn; do mkdir -p $OUT/$v; cp /tmp/prof2/$v/*.json $OUT/$v/ 2>/dev/null; done
grep -v Warn $OUT/profile.log | grep -E "==|per step|^ +(gemm|attention|copy|fusion|other|conv)" | head -30
