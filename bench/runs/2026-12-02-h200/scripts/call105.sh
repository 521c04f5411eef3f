python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res105; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
# 1. ConvNeXt-T FLoRA tap-all took 38.96 ms at 128 in call 104 against 23.72 in call 87 (same FLOPs): profile it beside flora-r8
timeout 180 python3 -m bench.profile --model convnext --cases flora-r8-tap-all flora-r8 --batch 128 --steps 5 --top 0 --no-command-buffers --out $R/prof > $R/prof.txt 2>&1
grep -E "^==|per step" $R/prof.txt | head -8; rm -rf $R/prof/trace-*
python3 -m bench.profile_diff $R/prof/flora-r8-tap-all.json $R/prof/flora-r8.json --top 40 > $R/prof-diff.txt 2>&1; head -24 $R/prof-diff.txt
(cd $R && tar czf $OUT/res.tgz .)
# 2. call 103's two flags are gone from this XLA (Unknown flag); split-K is now forced by --xla_gpu_experimental_force_split_k (0: heuristic).
#    GLoRA K=1 at 256 with split-K forced off (1) against the default
timeout 170 python3 -m bench.xla_flags --only '^jax/train/glora-supernet-k1@256$' --suites train --out $R/flags.json \
  --variant default= --variant split-k-1=--xla_gpu_experimental_force_split_k=1 2>&1 | grep -vE "Delay kernel|^W1" | tail -8
echo "end t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
