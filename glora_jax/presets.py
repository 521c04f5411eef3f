"""Named points and sizes of the GLoRA search space.

Choices (for ``space.fixed(choice, fallback_none=True)``; without a bias, C/D/E fall back to none):
- ``bitfit()``: E vector — b = b0 + e, bias tuning only.
- ``ssf()``: A vector + E vector — W = W0 ⊙ (1 + a) per output channel, b = b0 + e. On a linear
  layer this is SSF's γ ⊙ (W0 x + b0) + β exactly (a = γ - 1, e = (γ - 1) ⊙ b0 + β), since the
  free shift e absorbs the bias rescale.
- ``lora_only(r)``: B lora_r — W = W0 + B_in B_out, plain LoRA without an alpha/r scale.

Sizes (paper, section 3.1: the supernets differ only in the LoRA ranks of the search space):
``ranks("large") == (8, 4)``, ``ranks("medium") == (4, 2)``, ``ranks("small") == (2,)``.
"""

from __future__ import annotations

from typing import Literal

from glora_jax.support import NONE, TENSORS

SpaceSize = Literal["small", "medium", "large"]

_SPACE_RANKS: dict[str, tuple[int, ...]] = {"small": (2,), "medium": (4, 2), "large": (8, 4)}


def ranks(size: SpaceSize) -> tuple[int, ...]:
    """LoRA ranks of the paper's small / medium / large GLoRA search space."""
    if size not in _SPACE_RANKS:
        raise ValueError(f"unknown GLoRA space size {size!r}; choose from {list(_SPACE_RANKS)}")
    return _SPACE_RANKS[size]


def bitfit() -> dict[str, str]:
    """Bias tuning of the adapted layers: E vector, all else none (BitFit proper also tunes
    LayerNorm and patch-embedding biases, which are not GLoRA targets)."""
    return _choice(E="vector")


def ssf() -> dict[str, str]:
    """Per-output-channel scale and shift of the adapted layers: A vector, E vector (SSF proper
    also scales and shifts after LayerNorms and the patch embedding)."""
    return _choice(A="vector", E="vector")


def lora_only(rank: int) -> dict[str, str]:
    """LoRA on the weight: B lora_<rank>, all else none."""
    return _choice(B=f"lora_{rank}")


def _choice(**options: str) -> dict[str, str]:
    return {t: options.get(t, NONE) for t in TENSORS}
