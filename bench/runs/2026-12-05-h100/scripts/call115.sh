# call 115 (machine BU still held, tree 641be0e): "auto" reading once on the H100 with tiles
# 64,4,64,4,3 (call 112's sweep: fastest on fc1/fc2 alone), lora-r8 and flora-r8 in one process;
# then GLoRA K=4 and the fixed subnet at 256 as committed, another process
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1; R=$OUT; nvidia-smi --query-gpu=name --format=csv > $R/device.txt; cat scratch_dev/commit.txt > $R/commit.txt; timeout 250 python3 -c "
import sys, jax
from peft_core import activation_grads as ag, one_read
ag.ONE_READ_DEVICES = ag.ONE_READ_DEVICES + (jax.devices()[0].device_kind,)
one_read.TILES = one_read.Tiles(64, 4, 64, 4, 3)
print('ONE_READ_DEVICES', ag.ONE_READ_DEVICES, one_read.TILES, ag.MIN_ONE_READ_ROWS)
from bench import jax_suite
sys.exit(jax_suite.main(['--suites','train','--train-batches','256','--json','$R/1-train-tiles4.json','--only','^jax/train/(lora-r8|flora-r8)@256\$']))
" 2>&1 | grep -E "ONE_READ|img/s|rror"; timeout 200 python3 -m bench.jax_suite --suites train --train-batches 256 --json $R/2-train-glora.json --only '^jax/train/(glora-supernet-k4|glora-fixed)@256$' 2>&1 | grep -E "img/s|rror"
