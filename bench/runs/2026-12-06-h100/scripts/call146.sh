# call 146 (thirty-eighth session, 2026-12-06): the whole GLoRA task at the session's last tree, cold, with the stage lines shown (call 145's 285 s limit cut both of its runs before they printed)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res146; mkdir -p $R
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 320 python3 -m bench.jax_suite --json $R/1-cold.json --suites e2e > $R/1-cold.log 2>&1; echo "exit $?"
grep -vE "it/s\]|s/it\]" $R/1-cold.log | tail -15; save
