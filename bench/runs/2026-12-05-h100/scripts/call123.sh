# call 123: where FLoRA's step trails LoRA's on ViT-B/16 (~1 ms at batch 64, ~0.7 ms at 256): both profiled without command buffers, every kernel, optimised HLO kept (traces dropped); compared with bench.profile_diff here
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res123; mkdir -p $R; END=${END:-580}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz --exclude='trace-*' .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
for b in 64 256; do
  timeout $(left 250) python3 -m bench.profile --cases lora-r8 flora-r8 --batch $b --steps 5 --top 0 --no-command-buffers --out $R/prof$b 2>&1 | grep -vE "Delay kernel|^W1|^ +[0-9.]+ ms" | tail -30; rm -rf $R/prof$b/trace-*; save
done
