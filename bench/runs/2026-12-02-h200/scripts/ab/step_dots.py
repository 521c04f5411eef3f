"""dot_general, convolution and transpose shapes of a ConvNeXt-T training row's step (CPU lowering):
``python step_dots.py LABEL BATCH`` in a checkout, to diff two trees' programs."""
import collections, re, sys
from bench import jax_train
from bench.models import convnext_backbone
from bench.sizes import SIZES
label, batch = sys.argv[1], int(sys.argv[2])
size = SIZES["full"]
bench = jax_train.training_bench(convnext_backbone(size), size, "conv", None)
case = {c.label: c for c in jax_train.CONV_CASES}[label]
txt = jax_train.prepare_train_step(bench, case, batch=batch).lowered.as_text()
c = collections.Counter()
for l in txt.splitlines():
    m = re.search(r"stablehlo\.(dot_general|convolution|transpose)\b.*?(:\s*\(.*)$", l)
    if m:
        sig = re.sub(r"loc\(.*", "", m.group(2))
        dims = re.search(r"(contracting_dims = \[[^\]]*\] x \[[^\]]*\]|dims = \[[^\]]*\]|dim_numbers = [^,]*)", l)
        c[(m.group(1), dims.group(1) if dims else "", sig.strip())] += 1
for k, v in sorted(c.items()): print(v, *k)
