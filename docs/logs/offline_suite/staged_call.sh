#!/bin/bash
# One offline-suite call on a warm machine: assets were staged into /tmp/suite by earlier calls.
set -u
S=/tmp/suite
T=$S/tree
if [ ! -f $T/assets/weights/dinov2-s14.f16.npz ]; then
    mkdir -p $T/assets/weights $T/runs
    cat $S/dinov2.part1 $S/dinov2.part2 > $T/assets/weights/dinov2-s14.f16.npz
    cp $S/efficientnet-lite0.f16.npz $T/assets/weights/
    cp -r $S/data $T/assets/
    cp -r $S/whl $T/
    if [ -d $S/runs_seed ]; then cp -r $S/runs_seed/. $T/runs/; fi
fi
(cd $T && sha256sum -c --quiet $S/sha256.txt) || { echo "asset checksum mismatch"; exit 3; }
rm -rf .suite && ln -s $T .suite
cp $S/commit.txt $OUT/commit.txt
echo "runs before: $(find $T/runs -name result.json | wc -l)" > $OUT/before.txt
SUITE_TIMEOUT=${SUITE_TIMEOUT:-545} SUITE_DEADLINE=${SUITE_DEADLINE:-400} bash experiments/suite_device_call.sh
echo "runs after: $(find $T/runs -name result.json | wc -l)" >> $OUT/before.txt
tail -3 $OUT/launch.log
cat $OUT/before.txt
