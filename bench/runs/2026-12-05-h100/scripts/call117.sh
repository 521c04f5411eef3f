# call 117: every ViT-B/16 training row at 256 at one commit on the GPU (one process), then merged vs plain inference
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res117; mkdir -p $R; END=${END:-580}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout $(left 470) python3 -m bench.jax_suite --suites train --train-batches 256 --json $R/1-train256.json --only '^jax/train/(full|linear|biases-only|lora-r8|flora-r8|glora-supernet-k1|glora-supernet-k4|glora-fixed)@256$' 2>&1 | grep -E "img/s|rror"; save
timeout $(left 200) python3 -m bench.jax_suite --suites infer --json $R/2-infer.json 2>&1 | grep -E "img/s|rror"; save
