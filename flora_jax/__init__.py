"""FLoRA: Tucker-decomposed low-rank updates of Dense, DenseGeneral and conv kernels."""

from flora_jax.adapter import flora
from flora_jax.targets import CONV_TARGETS
from flora_jax.tucker import tucker_product

__all__ = ["CONV_TARGETS", "flora", "tucker_product"]
