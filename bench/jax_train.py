"""Training-step rows: the trainer's own jitted step (``make_train_step`` + ``jit_train_step``).

Per row: build the method (``experiments.methods.build_method``), split the frozen backbone
from the trainable {"adapter", "head"} (``init_trainable``), AdamW under the recipe's schedule,
compile the step once (``jitted.lower(...).compile()``, FLOPs and memory from XLA, the compile
time kept in the row but not in its step time), then time donated steps on rotating random
batches; a row whose loss is not finite after the timed steps raises.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from jax.sharding import Mesh

from bench.inputs import one_device_mesh, random_batches
from bench.results import Row
from bench.sizes import BenchSize
from bench.timing import TimingSettings, time_calls
from bench.xla_stats import compile_with_stats, timed_row
from experiments.backbones import Backbone, with_bias_grad
from experiments.methods import MethodConfig, bias_grad_for, build_method
from experiments.placement import put_global
from experiments.training import (
    HEAD_PATTERN,
    OptimConfig,
    lr_schedule,
    make_optimizer,
    make_train_step,
)
from experiments.training.packing import Packed
from experiments.training.partition import init_trainable
from experiments.training.sharding import jit_train_step, replicated
from experiments.training.state import create_state
from experiments.training.step import Forward
from peft_core import Adapter, full
from peft_core.paths import Params

#: The weight-space adapters (eff = W0 + dW, model run on eff) differentiate through W_eff: the
#: backward pass forms the full weight gradient dL/dW_eff of every adapted kernel, as full
#: fine-tuning does, and then contracts it to the low-rank factors.
WEIGHT_SPACE = "weight-space dW: full dL/dW_eff per adapted kernel, as in full FT"
#: LoRA's and FLoRA's default (``peft_core.activation_grads``): the model runs on
#: stop_gradient(W_eff) and the update's factors U, V (dW = U V) get their gradients from x, dy.
ACTIVATION_SPACE = (
    "activation-space grads (dU = x^T (dy V^T), dV = (xU)^T dy, no dL/dW) on layer calls wide "
    "enough with enough rows (grads='auto': every ViT-B/16 layer from batch 42 up; each tap "
    "reads x or dy once, as lora-r8-pallas, on an H100 SXM from batch 64 up, on an H200 from "
    "171 up)"
)
#: grads="pallas": "auto"'s taps, each reading the wider of x and dy once (peft_core.one_read).
ONE_READ = (
    "as lora-r8 / flora-r8, each tap's products of the wider of x and dy from one read of it "
    "(grads='pallas': a Pallas/Triton kernel, peft_core.one_read)"
)
#: The conv rows ("auto"): the pointwise (dense) kernels wide enough, on enough rows, are tapped
#: (ConvNeXt-T's last stage from batch 168 up), the rest and every convolution train in weight
#: space.
CONV_MIXED = (
    "dense kernels activation-space where wide enough with enough rows, the rest weight-space "
    "(full dL/dW_eff)"
)


#: What a case may build instead of ``build_method``'s adapter: (adapter, forward) of a backbone.
CustomBuild = Callable[[Backbone], tuple[Adapter, Forward]]


@dataclasses.dataclass(frozen=True)
class TrainCase:
    """One training row. num_configs: GLoRA supernet subnets per step (K, vmapped);
    fixed_cfg: GLoRA with one fixed subnet instead of sampling; custom: build the adapter and
    forward from the backbone instead of ``build_method(method)`` (``method`` then only names
    it)."""

    label: str
    method: MethodConfig
    num_configs: int = 1
    fixed_cfg: bool = False
    custom: CustomBuild | None = None
    note: str = ""


def _biases_only(backbone: Backbone) -> tuple[Adapter, Forward]:
    """Every bias of the backbone trains, every kernel is frozen: the backward pass forms input
    gradients through every layer but no weight gradient at all."""
    return full(targets=r".*/bias", exclude=HEAD_PATTERN), backbone.forward


VIT_CASES = (
    TrainCase("full", MethodConfig("full"), note="every weight trains"),
    TrainCase("linear", MethodConfig("linear"), note="frozen backbone: fwd + head bwd only"),
    TrainCase(
        "biases-only", MethodConfig("full"), custom=_biases_only,
        note="kernels frozen, biases train: input gradients, no weight gradient; the bound "
        "for any adapter that leaves W0 without a gradient",
    ),
    TrainCase("lora-r8", MethodConfig("lora", rank=8), note=ACTIVATION_SPACE),
    TrainCase("flora-r8", MethodConfig("flora", rank=8), note=ACTIVATION_SPACE),
    TrainCase("lora-r8-weight", MethodConfig("lora", rank=8, grads="weight"), note=WEIGHT_SPACE),
    TrainCase("flora-r8-weight", MethodConfig("flora", rank=8, grads="weight"), note=WEIGHT_SPACE),
    TrainCase("lora-r8-pallas", MethodConfig("lora", rank=8, grads="pallas"), note=ONE_READ),
    TrainCase("flora-r8-pallas", MethodConfig("flora", rank=8, grads="pallas"), note=ONE_READ),
    TrainCase(
        "glora-supernet-k1", MethodConfig("glora", space="large"), num_configs=1,
        note=f"random subnet per step; {WEIGHT_SPACE}",
    ),
    TrainCase(
        "glora-supernet-k4", MethodConfig("glora", space="large"), num_configs=4,
        note="4 random subnets per step (vmapped, B/4 each): 4 weight sets per kernel",
    ),
    TrainCase(
        "glora-fixed", MethodConfig("glora", space="large"), fixed_cfg=True,
        note="one fixed subnet (a seeded random draw stands in for a searched one)",
    ),
)  # fmt: skip

#: Row names of the plain and the scanned ViT's training rows, and of the scanned ViT's with
#: each block rematerialised, keeping ``SCAN_REMAT_POLICY``'s values (the dense layers' outputs).
VIT_PREFIX, SCAN_PREFIX, SCAN_REMAT_PREFIX = "jax/train", "jax/train-scan", "jax/train-scan-remat"
#: What the scan-remat suite's blocks keep. Keeping cuDNN attention's results as well
#: ("dots_with_no_batch_dims_and_attention_saveable") gained 0.6-1.0% img/s for about 1 GiB
#: more at 256 (docs/benchmarks.md, call 165).
SCAN_REMAT_POLICY = "dots_with_no_batch_dims_saveable"
#: The scanned ViT's suites: their row prefix and remat policy (None: no remat).
SCANNED_SUITES: dict[str, tuple[str, str | None]] = {
    "scan": (SCAN_PREFIX, None), "scan-remat": (SCAN_REMAT_PREFIX, SCAN_REMAT_POLICY),
}  # fmt: skip

#: Rows repeated on the scanned ViT (``nn.scan`` over blocks, params stacked): each adapter then
#: builds all 12 blocks' updates in one batched computation instead of 12 small ones per layer
#: type, which shows how much of a row's time is per-kernel launch overhead. The loop keeps its
#: residuals (the GEMM outputs and each block's input) in stacked buffers, zero-filled and then
#: written by a copy of each block's GEMM outputs: on an H100 a scanned step ran at 0.67x the
#: unrolled one, 0.74-0.81x with its blocks rematerialised ("scan-remat" suite;
#: docs/benchmarks.md, calls 156-164).
SCAN_CASES = tuple(
    c for c in VIT_CASES
    if c.label in ("biases-only", "lora-r8", "flora-r8", "glora-supernet-k1", "glora-fixed")
)  # fmt: skip

#: Rows of the data-parallel scaling suite (``bench.scaling``).
SCALE_CASES = tuple(c for c in VIT_CASES if c.label in ("lora-r8", "glora-supernet-k1"))

CONV_CASES = (
    TrainCase("full", MethodConfig("full"), note="every weight trains"),
    TrainCase("flora-r8", MethodConfig("flora", rank=8, kernel_rank=2), note=CONV_MIXED),
    TrainCase(
        "lora-r8-reshaped", MethodConfig("lora", rank=8),
        note="LoRA on kernels reshaped to (kh*kw*in, out); " + CONV_MIXED,
    ),
    TrainCase("flora-r8-weight", MethodConfig("flora", rank=8, kernel_rank=2, grads="weight"),
              note=WEIGHT_SPACE),
    TrainCase("flora-r8-tap-all",
              MethodConfig("flora", rank=8, kernel_rank=2, grads="activation"),
              note="every dense (pointwise) kernel activation-space, convolutions weight-space"),
    TrainCase("lora-r8-reshaped-weight", MethodConfig("lora", rank=8, grads="weight"),
              note="LoRA on kernels reshaped to (kh*kw*in, out); " + WEIGHT_SPACE),
)  # fmt: skip


#: The suites of ``bench.jax_suite`` whose rows are all training steps of this module.
TRAINING_SUITES = ("train", *SCANNED_SUITES, "conv")


def training_suite(
    size: BenchSize, suite: str
) -> tuple[str, tuple[TrainCase, ...], tuple[int, ...]]:
    """(row-name prefix, cases, batches) of one of ``TRAINING_SUITES`` at ``size``."""
    if suite == "train":
        return VIT_PREFIX, VIT_CASES, size.train_batches
    if suite in SCANNED_SUITES:
        return SCANNED_SUITES[suite][0], SCAN_CASES, size.train_batches
    if suite == "conv":
        return f"jax/train-convnext-{size.convnext}", CONV_CASES, size.conv_batches
    raise ValueError(f"{suite!r} is not a training suite; expected one of {TRAINING_SUITES}")


def training_keys(size: BenchSize, suite: str) -> list[str]:
    """The row keys "name@batch" of a training suite, in the order it measures them."""
    prefix, cases, batches = training_suite(size, suite)
    return [f"{prefix}/{case.label}@{batch}" for batch in batches for case in cases]


@dataclasses.dataclass(frozen=True)
class TrainBench:
    """What every training row shares: the model, its input size and how to time."""

    backbone: Backbone
    prefix: str
    image_size: int
    num_classes: int
    timing: TimingSettings
    peak_flops: float | None


def training_bench(
    backbone: Backbone, size: BenchSize, suite: str, peak_flops: float | None
) -> TrainBench:
    """The ``TrainBench`` of a training suite's rows (prefix from ``training_suite``)."""
    prefix, _, _ = training_suite(size, suite)
    return TrainBench(backbone, prefix, size.image_size, size.num_classes, size.timing, peak_flops)


class PreparedStep(NamedTuple):
    """A lowered (not yet compiled) train step with its arguments on the device; ``state`` is
    packed (``experiments.training.packing``), as the trainer's loop keeps it."""

    lowered: jax.stages.Lowered
    state: Packed
    frozen: Params
    inputs: list[tuple[jax.Array, jax.Array]]


def prepare_train_step(
    bench: TrainBench, case: TrainCase, *, batch: int, mesh: Mesh | None = None
) -> PreparedStep:
    """Build ``case``'s step with the trainer's functions and lower it for the global ``batch``,
    data-parallel over ``mesh`` (default: the first device, ``bench.inputs.one_device_mesh``).
    The backbone forms its bias gradients as the experiments do for the case's method ("auto":
    ``experiments.methods.bias_grad_for``)."""
    backbone = with_bias_grad(
        bench.backbone, bias_grad_for(case.method, num_configs=case.num_configs)
    )
    forward: Forward = backbone.forward
    if case.custom is not None:
        adapter, forward = case.custom(backbone)
    else:
        adapter = build_method(
            case.method, targets=backbone.targets, stacked=backbone.stacked,
            head_pattern=HEAD_PATTERN, compute_dtype=backbone.compute_dtype,
        ).adapter  # fmt: skip
    optim = OptimConfig()
    schedule = lr_schedule(optim, steps_per_epoch=100, total_steps=10_000)
    optimizer = make_optimizer(optim, schedule)
    space = adapter.space(backbone.params) if adapter.space is not None else None
    cfg = space.sample(jax.random.key(1)) if case.fixed_cfg and space is not None else None
    step = make_train_step(
        forward=forward,
        adapter=adapter,
        optimizer=optimizer,
        schedule=schedule,
        space=None if case.fixed_cfg else space,
        num_configs=case.num_configs,
        cfg=cfg,
    )
    mesh = one_device_mesh() if mesh is None else mesh
    frozen, trainable = init_trainable(
        jax.random.key(0), backbone.params, adapter, head_pattern=HEAD_PATTERN
    )
    frozen = put_global(frozen, replicated(mesh))
    state = put_global(create_state(trainable, optimizer, jax.random.key(2)), replicated(mesh))
    inputs = random_batches(
        num_sets=bench.timing.input_sets, batch=batch, image_size=bench.image_size,
        num_classes=bench.num_classes, mesh=mesh, seed=None,
    )  # fmt: skip
    jitted = jit_train_step(step, mesh, state)
    packed = jitted.pack(state)
    lowered = jitted.step.lower(packed, frozen, *inputs[0])
    return PreparedStep(lowered, packed, frozen, inputs)


def bench_train_step(
    bench: TrainBench, case: TrainCase, *, batch: int, mesh: Mesh | None = None,
    name: str | None = None, note: str | None = None,
) -> Row:  # fmt: skip
    """Time one training step of ``case`` at the global ``batch`` over ``mesh`` (default: the
    first device, as ``prepare_train_step``); the row is ``name`` (default
    ``<prefix>/<label>``) with ``note`` (default the case's); see the module docstring."""
    prepared = prepare_train_step(bench, case, batch=batch, mesh=mesh)
    compiled, stats = compile_with_stats(prepared.lowered)
    inputs, frozen = prepared.inputs, prepared.frozen
    carry = [prepared.state]

    def call(i: int) -> Any:
        images, labels = inputs[i % len(inputs)]
        carry[0], metrics = compiled(carry[0], frozen, images, labels)
        return metrics

    timing = time_calls(call, sync=jax.block_until_ready, settings=bench.timing)
    name = name or f"{bench.prefix}/{case.label}"
    loss = float(call(0)["loss"])
    if not math.isfinite(loss):  # a fast step that computes garbage is no result
        raise FloatingPointError(f"{name}@{batch}: loss {loss} after the timed steps")
    return timed_row(name, batch, timing, stats, bench.peak_flops, note or case.note)
