"""CPU check: tap-LoRA's gradients equal weight-space LoRA's on the tiny bench ViT."""
import os, sys
from pathlib import Path
import jax, jax.numpy as jnp
sys.path.insert(0, str(Path(__file__).resolve().parent))
import pallas_lowrank as plk
plk.INTERPRET = jax.default_backend() == "cpu"
import tap_ab
from bench.models import vit_backbone
from bench.sizes import SIZES
from peft_core import lora

bb = vit_backbone(SIZES["tiny"], attention=None)
import dataclasses
params = dict(bb.params); params["head"] = jax.tree.map(lambda v: jax.random.normal(jax.random.key(9), v.shape, v.dtype), params["head"])
bb = dataclasses.replace(bb, params=params)
ad_t, fwd_t = tap_ab.tap_lora(bb, 8)
ad_w = lora(8, targets=bb.targets)
ap = ad_w.init(jax.random.key(0), bb.params)
ap = jax.tree.map(lambda v: v + 0.05 * jax.random.normal(jax.random.key(1), v.shape), ap)
imgs = jax.random.randint(jax.random.key(2), (16, 32, 32, 3), 0, 256).astype(jnp.uint8)

def loss(ap, ad, fwd):
    out = fwd(ad.apply(bb.params, ap), imgs, train=False, rng=jax.random.key(3))
    return jnp.sum(out.astype(jnp.float32) ** 2)

gw = jax.jit(jax.grad(lambda a: loss(a, ad_w, bb.forward)))(ap)
gt = jax.jit(jax.grad(lambda a: loss(a, ad_t, fwd_t)))(ap)
lw = loss(ap, ad_w, bb.forward); lt = loss(ap, ad_t, fwd_t)
print("loss", float(lw), float(lt))
from peft_core.paths import flatten
fw, ft = flatten(gw), flatten(gt)
for k in fw:
    e = float(jnp.linalg.norm(fw[k] - ft[k]) / (jnp.linalg.norm(fw[k]) + 1e-30))
    print(f"{k:50s} {e:.2e}")
