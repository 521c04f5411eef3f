# call 140 (thirty-seventh session): the whole GLoRA task (--suites e2e) with JAX's persistent compilation cache, cold: the cache folder .jaxcache starts empty and is kept on the machine for call 141 (warm)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res140; mkdir -p $R; END=${END:-570}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
rm -rf .jaxcache; mkdir -p .jaxcache
JAX_COMPILATION_CACHE_DIR=$PWD/.jaxcache timeout $(left 520) python3 -m bench.jax_suite --json $R/1-e2e-cold.json --suites e2e 2>&1 | grep -vE "Warning|it/s\]|s/it\]" | tail -8
du -sh .jaxcache > $R/cache-size.txt; ls .jaxcache | wc -l >> $R/cache-size.txt; cat $R/cache-size.txt; save
