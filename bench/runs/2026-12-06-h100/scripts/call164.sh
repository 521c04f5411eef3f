# call 164 (written in the forty-third session, run in the forty-fourth, 2026-12-07 UTC): call 161's script at batch 64 in place of 256 (the
# scan-remat suite and its unrolled twins), asked for on nvidia-h100-x1
sed 's/256/64/g' bench/runs/2026-12-06-h100/scripts/call161.sh > /tmp/call164.sh && bash /tmp/call164.sh
