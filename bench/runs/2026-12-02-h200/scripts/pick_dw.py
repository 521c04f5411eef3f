"""Reads micro.txt: prints the config with the least total (fwd + vjp over the four stages), or
nothing when no Pallas config beats lax."""
import re, sys
tot = {}
BLOCKS = iter([3, 3, 9, 3])  # ConvNeXt-T blocks per stage: weight each stage line
for line in open(sys.argv[1]):
    if " | " not in line:
        continue
    w = next(BLOCKS)
    for part in line.split(" | ")[1:]:
        m = re.match(r"(lax|pallas (\S+)) fwd ([\d.]+) ms, vjp ([\d.]+) ms", part.strip())
        if m:
            key = m.group(2) or "lax"
            tot.setdefault(key, [0.0, 0])
            tot[key][0] += w * (float(m.group(3)) + float(m.group(4))); tot[key][1] += 1
full = {k: v[0] for k, v in tot.items() if v[1] == 4}
print({k: round(v, 3) for k, v in full.items()}, file=sys.stderr)
best = min((k for k in full if k != "lax"), key=full.get, default=None)
if best and "lax" in full and full[best] < full["lax"]:
    print(best)
