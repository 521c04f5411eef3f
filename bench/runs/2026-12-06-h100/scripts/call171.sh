# call 171 (forty-seventh session, 2026-12-07): call 169's script again, at the tree after its
# fixes (the working tree of 9395f15's code), on the warm machine of call 170; run as given to
# the device tool:
sed 's/Call 169 (forty-seventh session, 2026-12-07): the whole suite/Call 171 (forty-seventh session, 2026-12-07): call 169 again, at the tree after its fixes: the whole suite/' \
  bench/runs/2026-12-06-h100/scripts/call169.sh > /tmp/c171.sh && timeout 560 bash /tmp/c171.sh
cp /tmp/c171.sh $OUT/call171.sh
