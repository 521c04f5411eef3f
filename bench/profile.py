"""Where a training step's device time goes: a profiler trace of chosen rows, summed per kernel.

    python -m bench.profile --cases lora-r8 glora-fixed biases-only --batch 64 --out prof/

Each case (a ``bench.jax_train.VIT_CASES`` label; with ``--model convnext`` a ``CONV_CASES``
label) is compiled and warmed up like its benchmark
row, then ``--steps`` steps run under ``jax.profiler.trace(create_perfetto_trace=True)``. The
Perfetto trace's complete events ("ph": "X") on device processes (process name containing
``/device:``) are summed per kernel name and per category, divided by the number of steps:

    category  kernel name contains
    gemm      gemm, cublas, nvjet (cuBLAS on Hopper), xmma, cutlass, matmul, dot
    attention fmha, flash, sdpa, attention, dq_to_16bits (cuDNN's fused attention)
    conv      conv2d, convolve, wgrad, dgrad, fprop, nhwcaddpadding, cudnn (cuDNN's others)
    copy      copy, transpose, memcpy, memset
    fusion    fusion, loop_, input_, reduce
    other     anything else

The steps are launched back to back (as the trainer's loop does), so the device span per step
is the step's pipelined time; span minus busy time is the device's idle time (launch gaps and
waiting for the host). Output, per case:

- ``<out>/<case>.json``: per kernel ms and launches per step and, for kernels XLA emits, what
  ``bench.hlo_kernels`` reads from the optimised HLO (op_name, bytes per launch, GB/s, fraction
  of HBM peak); the same per HLO instruction (``ops``, GEMM FLOP/s included) where the trace's
  events name their instruction (``hlo_op``: CPU traces do; a GPU trace only with
  ``--no-command-buffers``, since a CUDA graph's kernels all name the graph, and that flag
  profiles a step without XLA's CUDA graphs, slower by ~3%);
  per category ms; span, busy, idle and launches per step. ``--top 0`` keeps every kernel.
- ``<out>/<case>.hlo.txt.gz``: the step's optimised HLO; a printed summary; the raw trace under
  ``<out>/trace-<case>/`` for Perfetto/TensorBoard.

On a CPU there are no device processes: the summary is empty (the trace is still written).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import hlo_kernels
from bench.arguments import ATTENTIONS
from bench.peaks import peak_bandwidth
from experiments.command_line import count_or_zero, exit_on_error, positive_int

if TYPE_CHECKING:
    from bench.jax_train import TrainCase

#: The file ``profile_cases`` writes each case's optimised HLO to: ``<out>/<case>`` + this.
HLO_SUFFIX = ".hlo.txt.gz"

CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("gemm", ("gemm", "cublas", "nvjet", "xmma", "cutlass", "matmul", "dot")),
    ("attention", ("fmha", "flash", "sdpa", "attention", "dq_to_16bits")),
    ("conv", ("conv2d", "convolve", "wgrad", "dgrad", "fprop", "nhwcaddpadding", "cudnn")),
    ("copy", ("copy", "transpose", "memcpy", "memset")),
    ("fusion", ("fusion", "loop_", "input_", "reduce")),
)


def category(kernel: str) -> str:
    """The first category whose keywords occur in ``kernel`` (lower-cased), else "other"."""
    name = kernel.lower()
    return next((c for c, words in CATEGORIES if any(w in name for w in words)), "other")


def device_events(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The complete events ("ph": "X") of device processes (process name containing /device:)."""
    events = list(events)
    devices = {
        e["pid"]
        for e in events
        if e.get("ph") == "M"
        and e.get("name") == "process_name"
        and "/device:" in str(e.get("args", {}).get("name", ""))
    }
    return [e for e in events if e.get("ph") == "X" and e.get("pid") in devices]


def device_kernel_times(events: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Total microseconds per event name over the complete events of device processes."""
    totals: dict[str, float] = collections.defaultdict(float)
    for e in device_events(events):
        totals[str(e.get("name"))] += float(e.get("dur", 0.0))
    return dict(totals)


def device_kernel_calls(events: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Launches per event name over the complete events of device processes."""
    return dict(collections.Counter(str(e.get("name")) for e in device_events(events)))


def hlo_op(event: dict[str, Any]) -> str:
    """The HLO instruction a trace event names (``args.hlo_op``), or ""."""
    return str(event.get("args", {}).get("hlo_op") or "")


def is_command_buffer(op: str) -> bool:
    """True for the instruction XLA names on every kernel of a CUDA graph (``command_buffer_1``)."""
    return op.startswith("command_buffer")


def device_op_times(events: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per HLO instruction, from the ``hlo_op`` arg XLA puts on the events it launches (device
    events that lack it are left out): total microseconds and launches per kernel name.

    Kernels run inside a command buffer (a CUDA graph, XLA's default on GPUs) all name the
    command buffer, not their instruction: they are left out too (``bench.profile
    --no-command-buffers`` profiles the step without them)."""
    ops: dict[str, dict[str, Any]] = collections.defaultdict(
        lambda: {"us": 0.0, "kernels": collections.Counter()}
    )
    for e in device_events(events):
        op = hlo_op(e)
        if op and not is_command_buffer(op):
            ops[op]["us"] += float(e.get("dur", 0.0))
            ops[op]["kernels"][str(e.get("name"))] += 1
    return dict(ops)


def command_buffer_ms(events: Iterable[dict[str, Any]], steps: int) -> float:
    """Device ms per step of the kernels that ran inside a command buffer (left out of ``ops``)."""
    us = sum(
        float(e.get("dur", 0.0)) for e in device_events(events) if is_command_buffer(hlo_op(e))
    )
    return us / steps / 1e3


def summarize_ops(op_times: dict[str, dict[str, Any]], steps: int, top: int = 25) -> list[dict]:
    """The ``top`` instructions (0: all) by time: hlo_op, ms and executions per step (the fewest
    launches of any one of its kernels: a cuBLAS split-K GEMM launches two kernels per
    execution, cuDNN's attention backward several memsets), and its kernels."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    rows = [
        {"hlo_op": op, "ms": t["us"] / steps / 1e3,
         "calls": min(t["kernels"].values()) / steps, "kernels": sorted(t["kernels"])}
        for op, t in op_times.items()
    ]  # fmt: skip
    return sorted(rows, key=lambda r: -r["ms"])[: top or None]


def device_occupancy(events: Iterable[dict[str, Any]], steps: int) -> dict[str, float]:
    """Per step: the device span (first kernel start to last kernel end) / steps, the time some
    kernel runs (union of kernel intervals, overlapping streams counted once), the span minus
    that (``idle``: launch gaps and waits for the host), and kernel launches."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    intervals = sorted(
        (float(e.get("ts", 0.0)), float(e.get("ts", 0.0)) + float(e.get("dur", 0.0)))
        for e in device_events(events)
    )
    if not intervals:
        return {"span_ms": 0.0, "busy_ms": 0.0, "idle_ms": 0.0, "launches": 0.0}
    busy, (start, end) = 0.0, intervals[0]
    for lo, hi in intervals[1:]:
        if lo > end:
            busy, start = busy + end - start, lo
        end = max(end, hi)
    busy += end - start
    span = end - intervals[0][0]  # end: the latest kernel end
    per_step = {"span_ms": span, "busy_ms": busy, "idle_ms": span - busy}
    return {k: v / steps / 1e3 for k, v in per_step.items()} | {"launches": len(intervals) / steps}


def summarize(
    totals_us: dict[str, float], steps: int, top: int = 25, calls: dict[str, int] | None = None
) -> dict[str, Any]:
    """ms per step: total, per category, and the ``top`` kernels (0: all) as name, category, ms
    and, given ``calls`` (launches per kernel over all steps), launches per step."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    per_step = {k: v / steps / 1e3 for k, v in totals_us.items()}
    by_category: dict[str, float] = collections.defaultdict(float)
    for kernel, ms in per_step.items():
        by_category[category(kernel)] += ms
    ranked = sorted(per_step.items(), key=lambda kv: -kv[1])[: top or None]
    kernels: list[dict[str, Any]] = [
        {"name": k, "category": category(k), "ms": ms}
        | ({} if calls is None else {"calls": calls.get(k, 0) / steps})
        for k, ms in ranked
    ]
    return {
        "steps": steps,
        "device_ms_per_step": sum(per_step.values()),
        "categories_ms": dict(sorted(by_category.items(), key=lambda kv: -kv[1])),
        "kernels": kernels,
        "num_kernels": len(per_step),
    }


def read_perfetto(trace_dir: Path) -> list[dict[str, Any]]:
    """The events of the (single, newest) ``perfetto_trace.json.gz`` under ``trace_dir``."""
    found = sorted(trace_dir.rglob("perfetto_trace.json.gz"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no perfetto_trace.json.gz under {trace_dir}")
    with gzip.open(found[-1], "rt") as f:
        data = json.load(f)
    return list(data["traceEvents"] if isinstance(data, dict) else data)


#: The models ``--model`` picks: ViT-B/16 (``bench.models.vit_backbone``) or ConvNeXt
#: (``convnext_backbone``), at ``--size``.
MODELS = ("vit", "convnext")


def train_cases(model: str, labels: Sequence[str]) -> dict[str, TrainCase]:
    """{label: ``jax_train.TrainCase``} of ``model``'s cases (``MODELS``: ViT,
    ``jax_train.VIT_CASES``; ConvNeXt, ``CONV_CASES``); a ValueError naming an unknown model or
    a label of ``labels`` that is no case of it."""
    from bench import jax_train

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {MODELS}")
    cases = {c.label: c for c in (jax_train.VIT_CASES if model == "vit" else jax_train.CONV_CASES)}
    unknown = [label for label in labels if label not in cases]
    if unknown:
        raise ValueError(f"unknown {model} case {unknown[0]!r}; choose from {sorted(cases)}")
    return cases


def profile_cases(labels: Sequence[str], *, size_name: str, batch: int, steps: int, out: Path,
                  attention: str, top: int = 25,
                  model: str = "vit") -> Iterator[dict[str, Any]]:  # fmt: skip
    """Per case: compile its train step, warm it up, trace ``steps`` steps, summarize. Every
    label is checked before anything is built (``train_cases``); the model is built once for
    all cases."""
    import jax

    from bench import jax_train
    from bench.models import choose_attention, convnext_backbone, vit_backbone
    from bench.sizes import SIZES

    cases = train_cases(model, labels)
    vit = model == "vit"
    size = SIZES[size_name]
    impl, note = choose_attention(attention) if vit else (None, "no attention")
    backbone = vit_backbone(size, attention=impl) if vit else convnext_backbone(size)
    bench = jax_train.TrainBench(
        backbone, "jax/train", size.image_size, size.num_classes, size.timing, None
    )
    for label in labels:
        prepared = jax_train.prepare_train_step(bench, cases[label], batch=batch)
        compiled = prepared.lowered.compile()
        state, inputs = prepared.state, prepared.inputs
        for i in range(3):  # warm-up, untraced
            state, metrics = compiled(state, prepared.frozen, *inputs[i % len(inputs)])
        jax.block_until_ready(metrics)
        trace_dir = out / f"trace-{label}"
        with jax.profiler.trace(str(trace_dir), create_perfetto_trace=True):
            for i in range(steps):
                state, metrics = compiled(state, prepared.frozen, *inputs[i % len(inputs)])
            jax.block_until_ready(metrics)
        events = read_perfetto(trace_dir)
        summary = summarize(
            device_kernel_times(events), steps, top, calls=device_kernel_calls(events)
        )
        hlo = compiled.as_text() or ""
        with gzip.open(out / f"{label}{HLO_SUFFIX}", "wt") as f:
            f.write(hlo)
        table, bandwidth = hlo_kernels.parse_hlo(hlo), peak_bandwidth(jax.devices()[0].device_kind)
        summary["kernels"] = hlo_kernels.annotate(summary["kernels"], table, bandwidth)
        ops = summarize_ops(device_op_times(events), steps, top)
        summary["ops"] = hlo_kernels.annotate_ops(ops, table, bandwidth)
        summary["ops_in_command_buffers_ms"] = command_buffer_ms(events, steps)
        yield {
            "case": label, "batch": batch, "size": size_name, "attention": note, **summary,
            "per_step": device_occupancy(events, steps),
        }  # fmt: skip


def render(result: dict[str, Any], top: int = 15) -> str:
    lines = [
        f"== {result['case']} @ batch {result['batch']}: {result['device_ms_per_step']:.2f} ms "
        f"device time per step, {result['num_kernels']} kernels ({result['attention']})",
        "   " + ", ".join(f"{c} {ms:.2f}" for c, ms in result["categories_ms"].items()),
        "   per step: " + ", ".join(f"{k} {v:.2f}" for k, v in result["per_step"].items()),
    ]
    lines += ["   " + line for line in hlo_kernels.render(result["kernels"], top)]
    if result.get("ops"):
        lines.append("   by HLO instruction:")
        lines += ["   " + line for line in hlo_kernels.render(result["ops"], top)]
    if result.get("ops_in_command_buffers_ms"):
        lines.append(
            f"   {result['ops_in_command_buffers_ms']:.2f} ms per step ran in CUDA graphs, not "
            "given to an instruction: --no-command-buffers for the per-instruction view"
        )
    return "\n".join(lines)


def disable_command_buffers() -> None:
    """Append ``--xla_gpu_enable_command_buffer=`` to XLA_FLAGS (read when jax starts its
    backend: ``main`` calls this before anything touches a device)."""
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_gpu_enable_command_buffer="
    ).strip()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.profile", description=(__doc__ or "").splitlines()[0]
    )
    p.add_argument("--cases", nargs="+", default=["lora-r8", "glora-fixed", "biases-only"])
    p.add_argument("--model", default="vit", choices=MODELS, help="cases of which suite")
    p.add_argument("--batch", type=positive_int, default=64)
    p.add_argument("--steps", type=positive_int, default=5)
    p.add_argument("--size", default="full", choices=("full", "tiny"))
    p.add_argument("--attention", default="auto", choices=ATTENTIONS)
    p.add_argument("--out", type=Path, default=Path("bench-profile"))
    p.add_argument(
        "--top", type=count_or_zero, default=25, help="kernels kept in the JSON (0: all)"
    )
    p.add_argument(
        "--no-command-buffers", action="store_true",
        help="XLA without CUDA graphs, so that each kernel names its HLO instruction (ops view)",
    )  # fmt: skip
    args = p.parse_args(argv)
    try:
        train_cases(args.model, args.cases)
    except ValueError as e:
        p.error(str(e))
    if args.no_command_buffers:
        disable_command_buffers()
    args.out.mkdir(parents=True, exist_ok=True)
    results = profile_cases(
        args.cases, size_name=args.size, batch=args.batch, steps=args.steps, out=args.out,
        attention=args.attention, top=args.top, model=args.model,
    )  # fmt: skip
    for result in results:
        (args.out / f"{result['case']}.json").write_text(json.dumps(result, indent=2))
        print(render(result), flush=True)
    return 0


if __name__ == "__main__":
    exit_on_error(main)
