python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res65; mkdir -p $R
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
timeout 150 python3 -m bench.torch_peers --json $R/0-torch.json --train-batches 256 --infer-batches 256 --warmup 5 --repeats 10 --input-sets 3 --window 5 --only '/lora-r8-compile@256$' 2>&1 | grep -E "img/s|rror|took"
echo "torch t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
ONLY='^jax/train/(lora-r8|flora-r8)@256$'
i=0
for rule in committed 'MlpBlock' 'MlpBlock|/out/' 'MlpBlock|query|key|value' committed; do
  [ $SECONDS -gt 470 ] && break
  i=$((i+1))
  if [ "$rule" = committed ]; then
    timeout 100 python3 -m bench.jax_suite --json $R/$i-committed.json --suites train --train-batches 256 --only "$ONLY" 2>&1 | grep -E "img/s|rror"
  else
    TAP_LAYERS="$rule" timeout 100 python3 scratch_dev/ab/tap_rule_ab.py --json $R/$i-$(echo "$rule" | tr -c "a-zA-Z\n" "-").json --suites train --train-batches 256 --only "$ONLY" 2>&1 | grep -E "img/s|rror|TAP_LAYERS|tapped|weight T" | sort -u
  fi
  echo "$i $rule t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .)
done
echo "end at $SECONDS s"
