python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD:$PWD/scratch_dev/ab PYTHONUNBUFFERED=1
R=/tmp/res100; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
# the bias gradient three ways: micro (GEMV, Pallas column sum, [x | 1]ᵀ dy), then GLoRA K=1 / fixed at 256 with each, one process per form; the branch view with the layers' own bias gradients, and with the ones column
B=256; ONLY="^jax/train/(glora-supernet-k1|glora-fixed)@$B\$"
timeout 100 python3 scratch_dev/ab/bias_pallas_ab.py --micro > $R/micro-pallas.txt 2>&1; grep -v "^W1\|^I1" $R/micro-pallas.txt | tail -12
timeout 60 python3 scratch_dev/ab/bias_kernel_ab.py --micro > $R/micro-kernel.txt 2>&1; grep -v "^W1\|^I1" $R/micro-kernel.txt | tail -15
echo "micro t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
BIASK=kernel timeout 130 python3 scratch_dev/ab/bias_kernel_ab.py --json $R/biask.json --suites train --train-batches $B ${SIZE:+--size $SIZE} --only "$ONLY" 2>&1 | grep -E "BIASK|img/s|rror"
echo "biask t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
BIASP=pallas timeout 130 python3 scratch_dev/ab/bias_pallas_ab.py --json $R/biasp.json --suites train --train-batches $B ${SIZE:+--size $SIZE} --only "$ONLY" 2>&1 | grep -E "BIASP|img/s|rror"
echo "biasp t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
GLORA_VIEW=branch GLORA_BIAS=dense timeout 130 python3 scratch_dev/ab/glora_branch_ab.py --json $R/branch-dense.json --suites train --train-batches $B ${SIZE:+--size $SIZE} --only "$ONLY" 2>&1 | grep -E "GLORA|img/s|rror"
echo "branch-dense t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
GLORA_VIEW=branch GLORA_ONES=1 timeout 130 python3 scratch_dev/ab/glora_branch_ab.py --json $R/branch-ones.json --suites train --train-batches $B ${SIZE:+--size $SIZE} --only "$ONLY" 2>&1 | grep -E "GLORA|img/s|rror"
echo "branch-ones t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
