# call 135 (prepared in the thirty-fourth session, not yet run; copy to scratch_dev/ with scratch_dev/commit.txt): the search's candidates/s with the scorer's vmap named CONFIG_AXIS (GLoRA's support products with the config axis leading, as the K=4 supernet step has them) against the code's unnamed vmap, in the order plain, named, plain, named, each a process (scripts/ab/scorer_axis_ab.py; the same scores up to float rounding)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
R=/tmp/res135; mkdir -p $R; END=${END:-580}
left() { local l=$((END - SECONDS)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }
save() { echo "t=$SECONDS"; (cd $R && tar czf $OUT/res.tgz .); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $R/device.txt
cat scratch_dev/commit.txt > $R/commit.txt
i=0
for form in plain named plain named; do
  i=$((i + 1))
  SCORER_AXIS=$form timeout $(left 140) python3 bench/runs/2026-12-05-h100/scripts/ab/scorer_axis_ab.py --suites search --json $R/$i-$form.json 2>&1 | grep -E "SCORER_AXIS|cand|/s|rror"; save
done
