# call 144 (thirty-eighth session, 2026-12-06): GLoRA's fixed-subnet and K=1 supernet steps at 256, this session's tree (HEAD) against its start (a8fc0a2, in scratch_dev/old): the static-none kernels now cast to update_dtype, the rank lookup masks out-of-range indices; each row a fresh process, new and old in turn
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONUNBUFFERED=1
R=/tmp/res144; mkdir -p $R; END=${END:-590}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
ROOT=$PWD
for tree in new old new old; do
  dir=$ROOT; [ $tree = old ] && dir=$ROOT/scratch_dev/old
  n=$((n + 1))
  (cd $dir && PYTHONPATH=/tmp/site:$dir timeout $(left 145) python3 -m bench.jax_suite --json $R/$n-$tree.json --suites train --train-batches 256 --isolate --only '^jax/train/(glora-fixed|glora-supernet-k1)@256$' 2>&1 | grep -E "img/s|rror") | sed "s/^/$tree: /"; save
done
