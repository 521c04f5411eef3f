"""What XLA says about a compiled function: FLOPs per call, device memory it needs, and how long
it took to compile.

FLOPs: ``lowered.cost_analysis()["flops"]``, XLA's HLO cost model on the module as lowered
(before optimisation), where every matmul and convolution is still a dot / convolution op. The
compiled module's own count is useless on GPU: XLA rewrites dots into cuBLAS / cuDNN custom
calls, which its cost model counts as zero (measured: 94 GFLOP for a 27 TFLOP ViT-B step).
Custom calls already present at lowering count as zero too: with attention="cudnn" the attention
matmuls (4·N²·D per image and layer, ~4% of ViT-B/16's forward) are missing, so MFU is slightly
understated. On the GPU backend of jax 0.11.2 the lowered module reported no "flops" at all
(measured), so GPU rows get their count from ``bench.count_flops`` (the same lowering on the
CPU backend, where the cost model answers).

Memory: ``compiled.memory_analysis()``: arguments + outputs + temporaries - donated aliases,
i.e. the peak the executable needs, per compiled function, independent of what ran before in
the process (``memory_stats()["peak_bytes_in_use"]`` cannot be reset, so it is process-wide).

Compile time: wall seconds of ``lowered.compile()`` (XLA's passes and, on GPU, its GEMM and
fusion autotuning; not tracing or lowering), paid once per shape and setting and again by
every process; with JAX's persistent compilation cache on (``JAX_COMPILATION_CACHE_DIR``) a
cache hit records the load time instead.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import jax

from bench.peaks import mfu
from bench.results import Row
from bench.timing import Timing

FLOPS_SOURCE = "XLA cost_analysis of the lowered HLO"
MEMORY_SOURCE = "XLA memory_analysis (args+out+temp-alias)"


class CompiledStats(NamedTuple):
    """flops: per call (None where XLA gives none); peak_bytes: None where not reported;
    compile_s: seconds ``lowered.compile()`` took (None: not timed)."""

    flops: float | None
    peak_bytes: int | None
    compile_s: float | None = None


def compiled_stats(lowered: jax.stages.Lowered, compiled: jax.stages.Compiled) -> CompiledStats:
    """FLOPs (of ``lowered``) and memory (of ``compiled``); see the module docstring."""
    cost: Any = lowered.cost_analysis()
    if isinstance(cost, list):  # older jax: one dict per device program
        cost = cost[0] if cost else {}
    flops = cost.get("flops") if cost else None  # None or 0: no count from this backend
    memory = compiled.memory_analysis()
    peak = None
    if memory is not None:
        peak = (
            memory.argument_size_in_bytes
            + memory.output_size_in_bytes
            + memory.temp_size_in_bytes
            - memory.alias_size_in_bytes
        )
    return CompiledStats(float(flops) if flops else None, peak)


def compile_with_stats(lowered: jax.stages.Lowered) -> tuple[jax.stages.Compiled, CompiledStats]:
    """``lowered.compile()``, timed, and its stats (``compiled_stats`` plus the compile time)."""
    started = time.perf_counter()
    compiled = lowered.compile()
    seconds = time.perf_counter() - started
    return compiled, compiled_stats(lowered, compiled)._replace(compile_s=seconds)


def timed_row(
    name: str, batch: int, timing: Timing, stats: CompiledStats, peak_flops: float | None,
    note: str,
) -> Row:  # fmt: skip
    """A row of one compiled function: median step, p10-p90, XLA's memory and FLOPs, MFU."""
    return Row(
        name=name,
        batch=batch,
        step_s=timing.median_s,
        spread_s=(timing.p10_s, timing.p90_s),
        peak_mem_bytes=stats.peak_bytes,
        memory_source=MEMORY_SOURCE,
        flops=stats.flops,
        flops_source=FLOPS_SOURCE if stats.flops is not None else "",
        mfu=mfu(stats.flops, timing.median_s, peak_flops),
        compile_s=stats.compile_s,
        note=note,
    )
