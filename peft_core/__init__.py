"""Shared core of glora_jax and flora_jax.

The adapter protocol, target selection by path patterns, LoRA and the baselines.
"""

from peft_core.activation_grads import GRADS, register_dense
from peft_core.adapter import (
    Adapter,
    adapted_paths,
    add_delta,
    check_tree,
    combine,
    over_stack,
    param_count,
    replace_leaves,
)
from peft_core.baselines import full, linear_probe
from peft_core.layers import Layer, find_layers
from peft_core.lora import lora
from peft_core.paths import flatten, get_leaf, select, unflatten

__all__ = [
    "GRADS",
    "Adapter",
    "Layer",
    "adapted_paths",
    "add_delta",
    "check_tree",
    "combine",
    "find_layers",
    "flatten",
    "full",
    "get_leaf",
    "linear_probe",
    "lora",
    "over_stack",
    "param_count",
    "register_dense",
    "replace_leaves",
    "select",
    "unflatten",
]
