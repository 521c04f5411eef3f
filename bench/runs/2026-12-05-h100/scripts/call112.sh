python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res112; mkdir -p $R; END=${END:-540}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
# the step at the committed tree: LoRA and FLoRA with the XLA tap and the one-read kernel (tiles 64,2,64,4,3), GLoRA K=1 without its size-one vmap; one process
timeout $(left 280) python3 -m bench.jax_suite --suites train --train-batches 256 --json $R/1-train.json --only '^jax/train/(lora-r8|lora-r8-pallas|flora-r8|flora-r8-pallas|glora-supernet-k1)@256$' 2>&1 | grep -E "img/s|rror"; save
timeout $(left 120) python3 -m bench.torch_peers --json $R/2-torch.json --train-batches 256 --infer-batches 256 --warmup 5 --repeats 10 --input-sets 3 --window 5 --only '/lora-r8-compile@256$' 2>&1 | grep -E "img/s|rror|took"; save
# the default sweep on the H100
timeout $(left 100) python3 -m bench.tap_backward --json $R/3-tap.json 2>&1 | grep -vE "Delay kernel|^W1"; save
