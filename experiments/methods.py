"""Every fine-tuning method of the experiments, built by name from one settings value.

| name   | adapter                         | subnet (cfg)                                   |
|--------|---------------------------------|------------------------------------------------|
| glora  | glora(ranks of ``space`` size)  | supernet: random per step, then searched       |
| flora  | flora(rank, kernel_rank, scale) | -                                              |
| lora   | lora(rank, alpha)               | -                                              |
| bitfit | glora(ranks=(1,))               | fixed: E vector (bias tuning)                  |
| ssf    | glora(ranks=(1,))               | fixed: A vector + E vector (scale and shift)   |
| full   | full() on every non-head leaf   | -                                              |
| linear | linear_probe()                  | -                                              |
The task head always trains; the methods' trainable counts (``Method.num_adapter_params``)
exclude it, as in the papers' tables.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from typing import Any

import jax

import flora_jax
import glora_jax
import peft_core
from experiments.models.dense import BiasGrad, check_bias_grad
from peft_core.paths import Params, Patterns

METHODS = ("glora", "flora", "lora", "bitfit", "ssf", "full", "linear")

#: The ``MethodConfig`` knobs each method reads (besides ``name``).
METHOD_KNOBS: dict[str, tuple[str, ...]] = {
    "glora": ("space",),
    "flora": ("rank", "kernel_rank", "scale", "tucker", "grads"),
    "lora": ("rank", "alpha", "grads"),
    "bitfit": (), "ssf": (), "full": (), "linear": (),
}  # fmt: skip


def unread_knobs(method: str) -> tuple[str, ...]:
    """The ``MethodConfig`` knobs ``method`` does not read, as config keys "method.<knob>": two
    configs that differ only in them run the same experiment."""
    fields = (f.name for f in dataclasses.fields(MethodConfig))
    return tuple(f"method.{k}" for k in fields if k != "name" and k not in METHOD_KNOBS[method])


def check_knobs(method: str, knobs: Iterable[str]) -> None:
    """ValueError for a knob among ``knobs`` (``MethodConfig`` fields a user set) that
    ``method`` does not read: it would be ignored without a word."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    ignored = sorted(set(knobs) - set(METHOD_KNOBS[method]) - {"name"})
    if ignored:
        reads = ", ".join(f"method.{k}" for k in METHOD_KNOBS[method]) or "none of them"
        raise ValueError(
            f"{', '.join(f'method.{k}' for k in ignored)} would be ignored: {method} reads {reads}"
        )


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Knobs of the methods; each method reads only its own (``METHOD_KNOBS``), and another
    method's knob set to other than its default is a ValueError, not silently ignored.

    rank/alpha: LoRA (scale alpha/rank; alpha None: scale 1). rank/kernel_rank/scale/tucker: FLoRA
    (channel-mode rank, conv spatial-mode rank, s, "nd" or "matrix"). grads: how LoRA and FLoRA
    train, "auto", "activation", "weight" or "pallas" (``peft_core.activation_grads``). space: GLoRA
    search space size "small" (ranks 2), "medium" (4, 2) or "large" (8, 4), as in the GLoRA paper.
    """

    name: str = "glora"
    rank: int = 8
    alpha: float | None = None
    kernel_rank: int = 2
    scale: float = 4.0
    tucker: str = "matrix"
    space: str = "large"
    grads: str = "auto"

    def __post_init__(self) -> None:
        if self.name not in METHODS:
            raise ValueError(f"unknown method {self.name!r}; choose from {METHODS}")
        if self.grads not in peft_core.GRADS:
            raise ValueError(f"unknown grads {self.grads!r}; choose from {peft_core.GRADS}")
        glora_jax.presets.ranks(self.space)  # type: ignore[arg-type]  # a known size
        check_knobs(
            self.name,
            [f.name for f in dataclasses.fields(self) if getattr(self, f.name) != f.default],
        )
        build_method(self, targets=())  # the adapter's own checks (ranks, alpha, scale, tucker)

    @property
    def searchable(self) -> bool:
        """A GLoRA supernet, searched after training: known before any data or weights load."""
        return self.name == "glora"


@dataclasses.dataclass(frozen=True)
class Method:
    """adapter; fixed_choice: GLoRA preset subnet."""

    config: MethodConfig
    adapter: peft_core.Adapter
    fixed_choice: dict[str, str] | None = None

    def fixed_cfg(self, params: Params) -> Any:
        """The preset subnet of bitfit/ssf (layers without a bias fall back to none)."""
        if self.fixed_choice is None or self.adapter.space is None:
            return None
        return self.adapter.space(params).fixed(self.fixed_choice, fallback_none=True)

    def num_adapter_params(self, params: Params, aparams: Any, cfg: Any = None) -> int:
        """Trainable adapter scalars, head excluded: what the chosen subnet really uses."""
        if self.adapter.space is not None and cfg is not None:
            return int(self.adapter.space(params).num_params(cfg))
        return peft_core.param_count(aparams)


def build_method(
    config: MethodConfig,
    *,
    targets: Patterns,
    stacked: Patterns | None = None,
    head_pattern: str = r"head/.*",
    compute_dtype: Any = None,
) -> Method:
    """The adapter of ``config.name`` on the backbone's ``targets`` (regexes over param paths).

    ``compute_dtype``: the backbone's (``Backbone.compute_dtype``); GLoRA computes its training
    update in it (``glora(update_dtype=...)``), None: f32.
    """
    name = config.name
    glora = functools.partial(
        glora_jax.glora, targets=targets, stacked=stacked, update_dtype=compute_dtype
    )
    if name == "glora":
        ranks = glora_jax.presets.ranks(config.space)  # type: ignore[arg-type]
        return Method(config, glora(ranks))
    if name in ("bitfit", "ssf"):
        choice = glora_jax.presets.bitfit() if name == "bitfit" else glora_jax.presets.ssf()
        return Method(config, glora((1,)), fixed_choice=choice)
    if name == "flora":
        adapter = flora_jax.flora(
            config.rank, kernel_rank=config.kernel_rank, scale=config.scale,
            tucker=config.tucker, targets=targets, stacked=stacked, grads=config.grads,
        )  # fmt: skip
        return Method(config, adapter)
    if name == "lora":
        return Method(
            config,
            peft_core.lora(
                config.rank,
                alpha=config.alpha,
                targets=targets,
                stacked=stacked,
                grads=config.grads,
            ),
        )
    if name == "full":
        return Method(config, peft_core.full(exclude=head_pattern))
    return Method(config, peft_core.linear_probe())


def bias_grad_for(
    config: MethodConfig, *, num_configs: int, requested: str = "auto", platform: str | None = None
) -> BiasGrad:
    """How the backbone's dense layers form their bias gradients for this method
    (``experiments.models.dense``): ``requested`` unless "auto", which picks "gemv" on a GPU for
    the GLoRA supernet with one subnet per step (and its fixed-subnet retrain), "reduce"
    otherwise: the faster form of each step measured on ViT-B/16 on an H200 (docs/benchmarks.md,
    calls 46-49); elsewhere (CPU, TPU: not measured) autodiff's. ``platform``: default
    ``jax.default_backend()``."""
    if requested != "auto":
        return check_bias_grad(requested)
    platform = jax.default_backend() if platform is None else platform
    single_subnet_glora = config.name == "glora" and num_configs == 1
    return "gemv" if single_subnet_glora and platform == "gpu" else "reduce"
