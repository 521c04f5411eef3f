python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res109; mkdir -p $R; END=${END:-420}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
# the step with the 64-column tiles 64,2,64,4,3 (fastest on fc1/fc2 in call 108's tap sweep), set as one_read.TILES before tracing
timeout $(left 240) python3 -c "
import runpy, sys
import peft_core.one_read as o
o.TILES = o.Tiles(64, 2, 64, 4, 3)
sys.argv = ['bench.jax_suite', '--suites', 'train', '--train-batches', '256', '--json', '$R/1-train.json', '--only', '^jax/train/(lora-r8|lora-r8-pallas|flora-r8|flora-r8-pallas)@256\$']
runpy.run_module('bench.jax_suite', run_name='__main__')
" 2>&1 | grep -E "img/s|rror"; save
timeout $(left 120) python3 -m bench.torch_peers --json $R/2-torch.json --train-batches 256 --infer-batches 256 --warmup 5 --repeats 10 --input-sets 3 --window 5 --only '/lora-r8-compile@256$' 2>&1 | grep -E "img/s|rror|took"; save
