"""Pick the one-read tiles with the least ViT-B block time (4 x 768x768 + fc1 + fc2) from a
bench.tap_backward JSON; print them as rows,blocks,cols,warps,stages (the default if none)."""
import json
import sys
from collections import defaultdict

WEIGHT = {(768, 768): 4, (768, 3072): 1, (3072, 768): 1}
rows = json.load(open(sys.argv[1]))["rows"]
total: dict[str, float] = defaultdict(float)
seen: dict[str, int] = defaultdict(int)
for r in rows:
    if r["form"].startswith("one-read ") or r["form"] == "xla":
        total[r["form"]] += WEIGHT[(r["fan_in"], r["fan_out"])] * r["ms"]
        seen[r["form"]] += 1
for form in sorted(total, key=total.get):
    print(f"# {form}: {total[form]:.3f} ms per block ({seen[form]} shapes)", file=sys.stderr)
done = [f for f in total if seen[f] == 3 and f.startswith("one-read ")]
print(min(done, key=total.get).split()[1] if done else "64,2,64,4,3")
