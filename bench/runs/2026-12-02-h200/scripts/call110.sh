python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res110; mkdir -p $R; END=${END:-300}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
# tiles with more resident programs per SM (fewer stages or rows: 2-3 a SM) or 8 warps, against the default 64,2,64,4,3
timeout $(left 70) python3 -m bench.tap_backward --json $R/1-tap.json --tiles 64,2,64,4,3 64,2,64,4,2 64,1,64,4,3 64,1,64,4,4 64,2,64,8,3 128,1,64,4,3 64,1,64,4,2 64,4,64,4,3 2>&1 | grep -vE "Delay kernel|^W1"; save
T=$(python3 scratch_dev/pick_tiles.py $R/1-tap.json 2>>$R/pick.txt); echo "picked $T" | tee -a $R/pick.txt; cat $R/pick.txt
# the step with the picked tiles set as one_read.TILES before tracing
timeout $(left 170) python3 -c "
import runpy, sys
import peft_core.one_read as o
o.TILES = o.Tiles(*map(int, '$T'.split(',')))
print('tiles', o.TILES)
sys.argv = ['bench.jax_suite', '--suites', 'train', '--train-batches', '256', '--json', '$R/2-train.json', '--only', '^jax/train/(lora-r8|lora-r8-pallas|flora-r8-pallas)@256\$']
runpy.run_module('bench.jax_suite', run_name='__main__')
" 2>&1 | grep -E "tiles|img/s|rror"; save
timeout $(left 90) python3 -m bench.torch_peers --json $R/3-torch.json --train-batches 256 --infer-batches 256 --warmup 5 --repeats 10 --input-sets 3 --window 5 --only '/lora-r8-compile@256$' 2>&1 | grep -E "img/s|rror|took"; save
