"""The optimiser: AdamW (decoupled decay on every trainable tensor) under a warm-up/cosine schedule.

Schedule, as timm's ``CosineLRScheduler(warmup_prefix=False)`` used by the reference, with the
epoch t = step / steps_per_epoch made continuous (the reference steps it once per epoch, one
epoch late):

    t < W:  lr = lr_w + t * (lr_0 - lr_w) / W
    t >= W: lr = lr_min + (lr_0 - lr_min) * (1 + cos(pi * t / T)) / 2

W warm-up epochs, T total epochs, lr_w the warm-up start, lr_0 the peak, lr_min the floor.

Every trainable tensor is updated on every step, also a GLoRA support tensor that the step's
subnet leaves unused (its gradient is zero; AdamW still moves it by its moments and decays it).
The reference does the same: it pins torch 1.10 (its ``environment.yml``), whose
``zero_grad()`` zero-fills gradients (``set_to_none=False``), so its AdamW steps every tensor
used once before. (torch >= 2.0's default, ``None`` gradients, would skip unused tensors.) What
differs is a tensor's time before its first use: torch leaves it alone and counts its steps
from that use, optax decays it and counts every step in the bias correction, so a tensor first
used at step 3 takes a first update 0.64x torch's (bias corrections alone, same moments), its
sixth 0.95x, and from then on between 0.95x and 1.024x.
"""

from __future__ import annotations

import logging
import math

import jax.numpy as jnp
import optax

from experiments.training.config import OptimConfig

log = logging.getLogger(__name__)


def lr_schedule(config: OptimConfig, *, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """The learning rate as a function of the (int) step; see the module docstring."""
    if steps_per_epoch < 1 or total_steps < 1:
        raise ValueError(
            f"steps_per_epoch ({steps_per_epoch}) and total_steps ({total_steps}) must be >= 1"
        )
    warmup_steps = config.warmup_epochs * steps_per_epoch
    if warmup_steps >= total_steps:
        log.warning(
            "the warm-up (%g epochs, %g steps) lasts the whole run (%d steps): the learning rate "
            "never reaches its peak %g nor its cosine; lower train.optim.warmup_epochs",
            config.warmup_epochs, warmup_steps, total_steps, config.learning_rate,
        )  # fmt: skip
    peak, start, floor = config.learning_rate, config.warmup_start_lr, config.min_lr

    def schedule(step: jnp.ndarray | int) -> jnp.ndarray:
        s = jnp.asarray(step, jnp.float32)
        cosine = floor + 0.5 * (peak - floor) * (1.0 + jnp.cos(math.pi * s / total_steps))
        if warmup_steps == 0:
            return cosine
        warmup = start + s * (peak - start) / warmup_steps
        return jnp.where(s < warmup_steps, warmup, cosine)

    return schedule


def make_optimizer(config: OptimConfig, schedule: optax.Schedule) -> optax.GradientTransformation:
    """AdamW(schedule), preceded by global-norm clipping when ``clip_grad_norm`` is set."""
    adamw = optax.adamw(
        schedule, b1=config.b1, b2=config.b2, eps=config.eps, weight_decay=config.weight_decay
    )
    if config.clip_grad_norm is None:
        return adamw
    return optax.chain(optax.clip_by_global_norm(config.clip_grad_norm), adamw)
