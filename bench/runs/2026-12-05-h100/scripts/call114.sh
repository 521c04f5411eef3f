# call 114 (machine BU still held, tree 641be0e): call 113 with PYTHONPATH mended: "auto" with
# the H100 added to ONE_READ_DEVICES before tracing (what ff0f381 commits), lora-r8, flora-r8,
# lora-r8-pallas in one process; then PEFT LoRA + torch.compile
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1; R=$OUT; nvidia-smi --query-gpu=name --format=csv > $R/device.txt; cat scratch_dev/commit.txt > $R/commit.txt; timeout 300 python3 -c "
import sys, jax
from peft_core import activation_grads as ag
ag.ONE_READ_DEVICES = ag.ONE_READ_DEVICES + (jax.devices()[0].device_kind,)
print('ONE_READ_DEVICES', ag.ONE_READ_DEVICES)
from bench import jax_suite
sys.exit(jax_suite.main(['--suites','train','--train-batches','256','--json','$R/1-train-auto.json','--only','^jax/train/(lora-r8|flora-r8|lora-r8-pallas)@256\$']))
" 2>&1 | grep -E "ONE_READ|img/s|rror"; timeout 150 python3 -m bench.torch_peers --json $R/2-torch.json --train-batches 256 --infer-batches 256 --warmup 5 --repeats 10 --input-sets 3 --window 5 --only '/lora-r8-compile@256$' 2>&1 | grep -E "img/s|rror|took"
