# call 143 (thirty-eighth session, 2026-12-06): on an H100, ConvNeXt-T FLoRA r=8 against LoRA on reshaped kernels and full fine-tuning at 128 (each a fresh process; call 139 on an H200 lost the LoRA row to its time limit), then the inference suite
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res143; mkdir -p $R; END=${END:-560}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout $(left 300) python3 -m bench.jax_suite --json $R/1-conv.json --suites conv --isolate --only '/(full|flora-r8|lora-r8-reshaped)@' 2>&1 | grep -E "img/s|took|rror"; save
timeout $(left 200) python3 -m bench.jax_suite --json $R/2-infer.json --suites infer 2>&1 | grep -E "attention|img/s|rror"; save
