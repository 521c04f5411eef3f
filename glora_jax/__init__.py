"""GLoRA: generalized LoRA with a per-layer search space, as pure transforms of Flax params."""

from glora_jax import presets
from glora_jax.adapter import glora
from glora_jax.evolution import SearchResult, evolutionary_search, save_result_json
from glora_jax.space import GLoRASpace

__all__ = [
    "GLoRASpace",
    "SearchResult",
    "evolutionary_search",
    "glora",
    "presets",
    "save_result_json",
]
