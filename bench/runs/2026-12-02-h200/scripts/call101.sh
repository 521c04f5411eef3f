python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res101; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
# where LoRA's 6.8 ms beyond the frozen bound go (1.5x PEFT LoRA + compile needs <= 51.0 ms): profile both, then bench.profile_diff
timeout 300 python3 -m bench.profile --cases lora-r8 biases-only --batch 256 --steps 5 --top 0 --no-command-buffers --out $R/prof > $R/prof.txt 2>&1
grep -E "^==|per step|gemm " $R/prof.txt | head -8; rm -rf $R/prof/trace-*
python3 -m bench.profile_diff $R/prof/lora-r8.json $R/prof/biases-only.json --top 40 > $R/prof-diff.txt 2>&1; head -30 $R/prof-diff.txt
echo "end t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
