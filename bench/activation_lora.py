"""Prototype (benchmark only): LoRA in activation space, y = x W0 + s (x A) B, for comparison.

The library's adapters are weight-space (eff = W0 + s A B, the model runs on eff). Their
gradient goes through W_eff, so the backward pass forms dL/dW_eff = xᵀ dy for every adapted
kernel — the full weight gradient, as in full fine-tuning — and only then contracts it to A and
B. In activation space the frozen W0 gets no weight gradient at all; A and B get theirs from
rank-r products. This module measures that difference with the project's own train step:

    adapter.apply(params, aparams) = {**params, LORA_KEY: aparams}     (nothing merged)
    forward(eff, images)            = the backbone with every targeted Dense/DenseGeneral call
                                      intercepted: y + s * ((x A) B) reshaped to y

``aparams`` are exactly ``peft_core.lora``'s (same init, same layout), so both forms compute the
same function; ``peft_core.lora(...).merge`` still serves the merged model.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from experiments.backbones import Backbone
from experiments.training.step import Forward
from peft_core import Adapter, find_layers, lora
from peft_core.adapter import AParams, Config, no_config
from peft_core.paths import Params, flatten

#: Key under which the LoRA factors ride along in the "effective params" tree.
LORA_KEY = "__activation_lora__"


def activation_lora(backbone: Backbone, rank: int) -> tuple[Adapter, Forward]:
    """(adapter, forward) of activation-space LoRA (scale 1, i.e. alpha = rank) on the
    backbone's targets; unscanned backbones only (layer names are module paths)."""
    if backbone.stacked is not None:
        raise ValueError("activation-space LoRA prototype needs an unscanned backbone")
    weight_space = lora(rank, targets=backbone.targets)
    in_ndims = {
        layer.name: len(layer.in_shape) for layer in find_layers(backbone.params, backbone.targets)
    }

    def apply(params: Params, aparams: AParams, cfg: Config = None) -> Params:
        no_config("activation-space LoRA", cfg)
        return {**params, LORA_KEY: aparams}

    def forward(params: Params, images: jax.Array, *, train: bool, rng: jax.Array) -> jax.Array:
        factors = flatten(params[LORA_KEY])  # "<layer name>/a", "<layer name>/b"
        frozen = {k: v for k, v in params.items() if k != LORA_KEY}

        def add_low_rank(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
            y = next_fun(*args, **kwargs)
            module = context.module
            name = "/".join(module.path)
            if context.method_name != "__call__" or name not in in_ndims:
                return y
            x = args[0]
            x = x.reshape(*x.shape[: x.ndim - in_ndims[name]], -1)
            a, b = (factors[f"{name}/{k}"].astype(y.dtype) for k in ("a", "b"))
            return y + ((x.astype(y.dtype) @ a) @ b).reshape(y.shape)

        with nn.intercept_methods(add_low_rank):
            return backbone.forward(frozen, images, train=train, rng=rng)

    adapter = Adapter(weight_space.init, apply, weight_space.merge)
    return adapter, forward
