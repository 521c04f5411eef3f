python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res16; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
git log -1 --format=%h > $R/commit.txt 2>/dev/null
GLORA_F32=1 timeout 100 python3 scratch_dev/ab/f32_update_ab.py --json $R/fixed64-f32.json --suites train --train-batches 64 --only '^jax/train/glora-fixed@64$' 2>&1 | grep -E "img/s|Error|GLoRA"
echo "at $SECONDS"
timeout 90 python3 -m bench.jax_suite --json $R/fixed64-bf16.json --suites train --train-batches 64 --only '^jax/train/glora-fixed@64$' 2>&1 | grep -E "img/s|Error"
echo "at $SECONDS"
left=$(( 285 - SECONDS ))
timeout $left python3 -m bench.profile --cases glora-fixed --batch 64 --top 0 --out $R/prof 2>&1 | tail -4
echo "at $SECONDS"
cd $R && tar czf $OUT/res.tgz . && ls $R
