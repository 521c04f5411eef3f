# call 136 (thirty-fifth session): the search suite after the cuDNN-under-vmap fix (call 135 found the search scorer failing: "Currently only support batch_dim in [0, None], but got dim=2", the key/value projections without a bias since b962691), then LoRA at 64 beside call 132's (the padding lengths now passed to cuDNN as jax itself filled them)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res136; mkdir -p $R; END=${END:-580}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout $(left 150) python3 -m bench.jax_suite --json $R/1-search.json --suites search 2>&1 | grep -vE "Warning|it/s\]|s/it\]" | tail -6; save
timeout $(left 120) python3 -m bench.jax_suite --suites train --train-batches 64 --json $R/2-lora64.json --only '^jax/train/lora-r8@64$' 2>&1 | grep -E "attention|img/s|rror"; save
