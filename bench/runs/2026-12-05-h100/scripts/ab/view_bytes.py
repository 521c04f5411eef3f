"""CPU look (not project code): the train view's weight side for LoRA and FLoRA at ViT-B/16 size,
compiled for the CPU: the view's apply (held kernels, U and V beside each), "fwd", and the
gradient of the sum of its outputs, "fwd+grad" (the held kernels carry none: stop_gradient).
dots, fusions and XLA's bytes accessed.

    JAX_PLATFORMS=cpu python bench/runs/2026-12-05-h100/scripts/ab/view_bytes.py
"""
import re
import jax, jax.numpy as jnp
from bench.models import vit_backbone
from bench.sizes import SIZES
from experiments.methods import MethodConfig, build_method

backbone = vit_backbone(SIZES["full"], attention="xla")
for name in ("lora", "flora"):
    adapter = build_method(MethodConfig(name, rank=8), targets=backbone.targets,
                           stacked=backbone.stacked, compute_dtype=backbone.compute_dtype).adapter
    view = adapter.train
    params = backbone.params
    ap = adapter.init(jax.random.key(0), params)
    def pairing(ap, params):
        eff = view.apply(params, ap)
        return sum(jnp.sum(e.astype(jnp.float32)) for e in jax.tree.leaves(eff))
    for label, fn in (("fwd", lambda ap, p: view.apply(p, ap)), ("fwd+grad", jax.grad(pairing))):
        c = jax.jit(fn).lower(ap, params).compile()
        text = c.as_text() or ""
        cost = c.cost_analysis(); cost = cost[0] if isinstance(cost, list) else cost
        print(name, label, len(re.findall(r"\bdot\(", text)), "dots", len(re.findall(r"\bfusion\(", text)),
              "fusions", round(cost.get("bytes accessed", 0) / 1e9, 3), "GB", flush=True)
