python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD:$PWD/scratch_dev/ab PYTHONUNBUFFERED=1
R=/tmp/res99; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
# GLoRA K=1 / fixed at 256, one process per form: the code; the branch view (its tap forms the bias gradients) on every layer, on the MLP's only; the code without the K=1 vmap
B=256; ONLY="^jax/train/(glora-supernet-k1|glora-fixed)@$B\$"; WITH_LORA="^jax/train/(lora-r8|glora-supernet-k1|glora-fixed)@$B\$"
run() {  # name, rows, env...
  name=$1; rows=$2; shift 2
  env "$@" timeout 160 python3 scratch_dev/ab/glora_branch_ab.py --json $R/$name.json --suites train --train-batches $B ${SIZE:+--size $SIZE} --only "$rows" 2>&1 | grep -E "GLORA|img/s|rror"
  echo "$name t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
}
run code "$WITH_LORA" GLORA_VIEW=code
run branch "$WITH_LORA" GLORA_VIEW=branch
run branch-mlp "$ONLY" GLORA_VIEW=branch GLORA_BRANCH_LAYERS=MlpBlock
run novmap "^jax/train/glora-supernet-k1@$B\$" GLORA_VIEW=novmap
