# call 139 (thirty-sixth session): at 395dd97 (library as at 6c7f6b1), on the H100: ConvNeXt-T FLoRA r=8 against LoRA on reshaped kernels and full fine-tuning at 128 (each a fresh process), then the inference suite (plain backbone and merged GLoRA at 1 / 64 / 256)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res139; mkdir -p $R; END=${END:-470}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout $(left 230) python3 -m bench.jax_suite --json $R/1-conv.json --suites conv --isolate --only '/(full|flora-r8|lora-r8-reshaped)@' 2>&1 | grep -E "img/s|took|rror"; save
timeout $(left 220) python3 -m bench.jax_suite --json $R/2-infer.json --suites infer 2>&1 | grep -E "attention|img/s|rror"; save
