# call 118: the PyTorch peers at 256 (eager and torch.compile) and eager inference at 256, 64, 1, same machine
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res118; mkdir -p $R; END=${END:-580}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout $(left 560) python3 -m bench.torch_peers --json $R/1-torch256.json --train-batches 256 --infer-batches 256 64 1 --warmup 5 --repeats 10 --input-sets 3 --window 5 --only '^torch/(train/(full|full-compile|linear|lora-r8|lora-r8-compile|glora-r8|glora-r8-compile)|infer/.*)@' 2>&1 | grep -E "img/s|rror|took"; save
