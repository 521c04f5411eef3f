python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res107; mkdir -p $R; END=${END:-430}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
# LoRA then FLoRA, each with the XLA tap ("auto") and the kernel (grads="pallas", default tiles 64,4,32,4,3 since e784dfc), one process
timeout $(left 300) python3 -m bench.jax_suite --suites train --train-batches 256 --json $R/1-train.json --only '^jax/train/(lora-r8|lora-r8-pallas|flora-r8|flora-r8-pallas)@256$' 2>&1 | grep -E "img/s|rror"; save
