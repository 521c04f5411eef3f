# call 145 (thirty-eighth session, 2026-12-06): the whole GLoRA task at the session's last tree, cold (empty persistent compilation cache) then warm, as call 142
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res145; mkdir -p $R; END=${END:-470}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
rm -rf /tmp/jc; mkdir -p /tmp/jc
for run in 1-cold 2-warm; do
  JAX_COMPILATION_CACHE_DIR=/tmp/jc timeout $(left $([ $run = 1-cold ] && echo 285 || echo 200)) python3 -m bench.jax_suite --json $R/$run.json --suites e2e 2>&1 | grep -E "task/s|took|rror"
  { du -sh /tmp/jc; ls /tmp/jc | wc -l; } > $R/$run-cache.txt; cat $R/$run-cache.txt; save
done
