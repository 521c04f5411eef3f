# call 119: batch 64 on the same machine: the JAX training rows (and the one-read kernel forced, grads="pallas", which "auto" leaves out at 64), then the PyTorch peers
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res119; mkdir -p $R; END=${END:-580}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout $(left 330) python3 -m bench.jax_suite --suites train --train-batches 64 --json $R/1-train64.json --only '^jax/train/(full|biases-only|lora-r8|flora-r8|lora-r8-pallas|glora-supernet-k1|glora-supernet-k4|glora-fixed)@64$' 2>&1 | grep -E "img/s|rror"; save
timeout $(left 250) python3 -m bench.torch_peers --json $R/2-torch64.json --train-batches 64 --infer-batches 64 --warmup 5 --repeats 10 --input-sets 3 --window 5 --only '^torch/train/(full-compile|lora-r8|lora-r8-compile|glora-r8-compile)@' 2>&1 | grep -E "img/s|rror|took"; save
