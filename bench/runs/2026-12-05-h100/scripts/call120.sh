# call 120: the one-read kernel at batch 64 (12,672 rows): one-layer tile sweep, then LoRA and FLoRA with the XLA tap and the kernel, and the PyTorch peer
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res120; mkdir -p $R; END=${END:-580}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout $(left 110) python3 -m bench.tap_backward --tokens 12672 --tiles 64,2,64,4,3 64,1,64,4,3 64,4,64,4,3 64,1,64,4,4 --json $R/1-tap64.json 2>&1 | grep -vE "Delay kernel|^W1"; save
timeout $(left 220) python3 -m bench.jax_suite --suites train --train-batches 64 --json $R/2-train64.json --only '^jax/train/(lora-r8|flora-r8|lora-r8-pallas|flora-r8-pallas)@64$' 2>&1 | grep -E "img/s|rror"; save
timeout $(left 80) python3 -m bench.torch_peers --json $R/3-torch64.json --train-batches 64 --infer-batches 64 --warmup 5 --repeats 10 --input-sets 3 --window 5 --only '^torch/train/lora-r8-compile@' 2>&1 | grep -E "img/s|rror|took"; save
