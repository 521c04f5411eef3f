python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res108; mkdir -p $R; END=${END:-540}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
# for an H100 (nvidia-h100-x1): the step with the kernel's default tiles 64,4,32,4,3, which call 107 timed on an H200 only
timeout $(left 300) python3 -m bench.jax_suite --suites train --train-batches 256 --json $R/1-train.json --only '^jax/train/(lora-r8|lora-r8-pallas|flora-r8|flora-r8-pallas)@256$' 2>&1 | grep -E "img/s|rror"; save
timeout $(left 120) python3 -m bench.torch_peers --json $R/2-torch.json --train-batches 256 --infer-batches 256 --warmup 5 --repeats 10 --input-sets 3 --window 5 --only '/lora-r8-compile@256$' 2>&1 | grep -E "img/s|rror|took"; save
# 64-column tiles (wgmma for both dots) against call 106's best
timeout $(left 100) python3 -m bench.tap_backward --json $R/3-tap.json 2>&1 | grep -vE "Delay kernel|^W1"; save
