# call 113 (machine BU still held, tree 641be0e): "auto" with the H100 added to ONE_READ_DEVICES
# before tracing, then PEFT LoRA + torch.compile. The JAX part failed at import (PYTHONPATH
# left out /tmp/site, where call 112 had installed tensorboardX): only 2-torch.json came back.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1; R=$OUT; nvidia-smi --query-gpu=name --format=csv > $R/device.txt; cat scratch_dev/commit.txt > $R/commit.txt; timeout 250 python3 -c "
import sys, jax
from peft_core import activation_grads as ag
ag.ONE_READ_DEVICES = ag.ONE_READ_DEVICES + (jax.devices()[0].device_kind,)
print('ONE_READ_DEVICES', ag.ONE_READ_DEVICES)
from bench import jax_suite
sys.exit(jax_suite.main(['--suites','train','--train-batches','256','--json','$R/1-train-auto.json','--only','^jax/train/(lora-r8|flora-r8|lora-r8-pallas)@256\$']))
" 2>&1 | grep -E "ONE_READ|img/s|rror"; timeout 200 python3 -m bench.torch_peers --json $R/2-torch.json --train-batches 256 --infer-batches 256 --warmup 5 --repeats 10 --input-sets 3 --window 5 --only '/lora-r8-compile@256$' 2>&1 | grep -E "img/s|rror|took"
