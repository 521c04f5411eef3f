# call 141 (thirty-seventh session): the whole GLoRA task again, warm: call 140 filled .jaxcache on this machine
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res141; mkdir -p $R; END=${END:-570}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
JAX_COMPILATION_CACHE_DIR=$PWD/.jaxcache timeout $(left 520) python3 -m bench.jax_suite --json $R/1-e2e-warm.json --suites e2e 2>&1 | grep -vE "Warning|it/s\]|s/it\]" | tail -8
du -sh .jaxcache > $R/cache-size.txt; ls .jaxcache | wc -l >> $R/cache-size.txt; cat $R/cache-size.txt; save
