"""The PyTorch stack users would otherwise pick, measured like the JAX rows (its own process).

timm ``vit_base_patch16_224`` (random init, ``num_classes`` head), bf16 autocast, fused AdamW
(lr 1e-4, wd 1e-4) on the trainable params, eager and ``torch.compile`` (the model compiled,
the optimiser eager). Rows:

    torch/train/full, full-compile        every weight trains
    torch/train/linear                    only the head trains
    torch/train/lora-r8, -compile         HF PEFT LoRA r=8 (alpha 8) on qkv/proj/fc1/fc2
    torch/train/glora-r8, -compile        HF PEFT's GLoRA tuner r=8 on the same layers, when
                                          this peft version has one (else a "skipped" entry)
    torch/infer/plain                     eval forward under ``torch.inference_mode``

FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one eager forward+backward (the
inference rows: forward; matmuls, convolutions and SDPA; the compiled rows reuse the eager
count). Memory:
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (per row).
Usage: ``python -m bench.torch_peers --json out.json [options]``; without torch/timm/peft it
writes no rows and a "skipped" reason. Only this module of ``bench`` imports torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import time
import traceback
from collections.abc import Callable, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from bench.arguments import row_regex
from bench.peaks import mfu, peak_flops
from bench.results import Row, key_filter, save_rows
from bench.timing import TimingSettings, time_calls
from experiments.command_line import exit_on_error, positive_int

#: The ViT-B/16 kernels the JAX LoRA adapts: attention qkv and out projection, both MLP layers
#: (a full-match regex, so timm's patch_embed.proj is not included).
TARGET_MODULES = r"blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)"
RANK = 8
#: How a training row's and an inference row's FLOPs are counted.
TRAIN_FLOPS_SOURCE = "torch FlopCounterMode (eager fwd+bwd)"
INFER_FLOPS_SOURCE = "torch FlopCounterMode (eager fwd)"


@dataclasses.dataclass(frozen=True)
class PeerSettings:
    """model/depth/image_size/num_classes: the timm model; batches: train and infer sizes."""

    model: str
    depth: int | None
    image_size: int
    num_classes: int
    train_batches: tuple[int, ...]
    infer_batches: tuple[int, ...]
    compile: bool
    timing: TimingSettings
    only: str | None = None


def peer_settings(args: argparse.Namespace) -> PeerSettings:
    """The settings of this command line's parsed ``args``."""
    return PeerSettings(
        model=args.model, depth=args.depth, image_size=args.image_size,
        num_classes=args.num_classes, train_batches=tuple(args.train_batches),
        infer_batches=tuple(args.infer_batches), compile=args.compile,
        timing=TimingSettings(
            args.warmup, args.repeats, args.input_sets, args.window, args.min_window_ms / 1e3
        ),
        only=args.only,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = peer_settings(args)
    out = Path(args.json)
    missing = [name for name in ("torch", "timm", "peft") if find_spec(name) is None]
    why = f"not installed: {', '.join(missing)} (pip install torch timm peft)" if missing else ""
    if not missing:
        try:
            import peft
            import timm
            import torch
        except ImportError as e:  # installed but broken, e.g. against another transformers
            why = f"cannot import: {e}"
    if why:
        save_rows([], out, skipped=[f"torch peers: {why}"], failed=[])
        print(f"torch peers skipped: {why}", flush=True)
        return 0

    versions = {"torch": torch.__version__, "timm": timm.__version__, "peft": peft.__version__}
    rows, skipped, failed = run_peers(settings, out=out, versions=versions)
    save_rows(
        rows, out, skipped=skipped, failed=failed, versions=versions,
        timing=settings.timing.describe(), device=torch_device(),
    )  # fmt: skip
    return 0


def torch_device() -> str:
    """The device the rows ran on, named as ``bench.jax_suite`` names it ("gpu: NVIDIA H100
    80GB HBM3 x1"), so that ``bench.report`` can tell one machine kind's files from two."""
    import torch

    if not torch.cuda.is_available():
        return "cpu: cpu x1"  # as jax names its one CPU device
    return f"gpu: {torch.cuda.get_device_name()} x{torch.cuda.device_count()}"


def run_peers(
    settings: PeerSettings, *, out: Path, versions: dict[str, str]
) -> tuple[list[Row], list[str], list[dict[str, Any]]]:
    """Every row of the module docstring; a row that raises is listed in ``failed``."""
    import peft
    import torch

    rows: list[Row] = []
    skipped: list[str] = []
    failed: list[dict[str, Any]] = []
    kinds = ["full", "linear", "lora-r8"]
    if hasattr(peft, "GloraConfig"):  # peft >= 0.21.2
        kinds.append("glora-r8")
    else:
        skipped.append(f"torch/train/glora-r8: peft {peft.__version__} has no GLoRA tuner")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    peak = peak_flops(torch.cuda.get_device_name()) if device == "cuda" else None

    def record(name: str, batch: int, measure: Callable[[], Row]) -> None:
        try:
            rows.append(measure())
            print(f"{name}@{batch}: {rows[-1].items_per_s:.1f} img/s", flush=True)
        except Exception as e:  # noqa: BLE001 - report the row as failed, keep measuring
            failed.append({"name": name, "batch": batch, "error": f"{type(e).__name__}: {e}"})
            traceback.print_exc()
        save_rows(
            rows, out, skipped=skipped, failed=failed, versions=versions,
            timing=settings.timing.describe(), device=torch_device(),
        )  # fmt: skip

    for name, batch, kind, compiled in planned_rows(settings, kinds):
        if kind is None:
            measure = functools.partial(_infer_row, settings, batch=batch, device=device, peak=peak)
        else:
            measure = functools.partial(
                _train_row, settings, name, kind, compiled=compiled, batch=batch,
                device=device, peak=peak,
            )  # fmt: skip
        record(name, batch, measure)
    return rows, skipped, failed


def planned_rows(
    settings: PeerSettings, kinds: Sequence[str]
) -> list[tuple[str, int, str | None, bool]]:
    """(name, batch, training kind or None for inference, compiled) of every row to measure, in
    order: each train batch's kinds (eager, then compiled unless linear or ``compile`` is off),
    then the inference batches; only rows whose key name@batch ``only`` selects (``key_filter``)."""
    rows: list[tuple[str, int, str | None, bool]] = []
    for batch in settings.train_batches:
        for kind in kinds:
            modes = [False, True] if settings.compile and kind != "linear" else [False]
            for compiled in modes:
                name = f"torch/train/{kind}" + ("-compile" if compiled else "")
                rows.append((name, batch, kind, compiled))
    rows += [("torch/infer/plain", batch, None, False) for batch in settings.infer_batches]
    wanted = key_filter(settings.only)
    return [r for r in rows if wanted(f"{r[0]}@{r[1]}")]


def _model(settings: PeerSettings, kind: str, device: str) -> Any:
    """The timm ViT with ``kind``'s trainable params (peft wraps it for lora/glora)."""
    import peft
    import timm

    extra = {} if settings.depth is None else {"depth": settings.depth}
    model = timm.create_model(
        settings.model, pretrained=False, num_classes=settings.num_classes,
        img_size=settings.image_size, **extra,
    )  # fmt: skip
    if kind == "linear":
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("head."))
    elif kind == "lora-r8":
        config = peft.LoraConfig(
            r=RANK, lora_alpha=RANK, target_modules=TARGET_MODULES, modules_to_save=["head"]
        )
        model = peft.get_peft_model(model, config)
    elif kind == "glora-r8":
        glora_config = peft.GloraConfig(  # A, B, C: LoRA r=8; D, E: scalars (peft's defaults)
            r=RANK, target_modules=TARGET_MODULES, modules_to_save=["head"]
        )
        model = peft.get_peft_model(model, glora_config)
    return model.to(device)


def _inputs(settings: PeerSettings, batch: int, device: str) -> list[tuple[Any, Any]]:
    import torch

    shape = (batch, 3, settings.image_size, settings.image_size)
    return [
        (
            torch.randn(shape, device=device),
            torch.randint(0, settings.num_classes, (batch,), device=device),
        )
        for _ in range(settings.timing.input_sets)
    ]


def _sync(device: str) -> Callable[[Any], None]:
    import torch

    def sync(_: Any) -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    return sync


def _train_row(
    settings: PeerSettings, name: str, kind: str, *, compiled: bool, batch: int, device: str,
    peak: float | None,
) -> Row:  # fmt: skip
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    model = _model(settings, kind, device).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=1e-4, fused=device == "cuda")
    inputs = _inputs(settings, batch, device)

    def loss_of(fn: Any, images: Any, labels: Any) -> Any:
        with torch.autocast(device, dtype=torch.bfloat16):
            return F.cross_entropy(fn(images).float(), labels)

    with FlopCounterMode(display=False) as counter:
        loss_of(model, *inputs[0]).backward()
    optimizer.zero_grad(set_to_none=True)
    flops = float(counter.get_total_flops())
    forward = torch.compile(model) if compiled else model

    def step(i: int) -> Any:
        loss = loss_of(forward, *inputs[i % len(inputs)])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return _timed_row(
        name, batch, step, device=device, settings=settings, flops=flops,
        flops_source=TRAIN_FLOPS_SOURCE, peak=peak, note=_train_note(kind, compiled, trainable),
    )  # fmt: skip


def _train_note(kind: str, compiled: bool, trainable: list[Any]) -> str:
    count = sum(p.numel() for p in trainable)
    mode = "torch.compile" if compiled else "eager"
    return f"{mode}; {count / 1e6:.2f}M trainable (head incl.)"


def _infer_row(settings: PeerSettings, *, batch: int, device: str, peak: float | None) -> Row:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = _model(settings, "full", device).eval()
    inputs = _inputs(settings, batch, device)

    def forward(i: int) -> Any:
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16):
            return model(inputs[i % len(inputs)][0])

    with FlopCounterMode(display=False) as counter:
        forward(0)
    return _timed_row(
        "torch/infer/plain", batch, forward, device=device, settings=settings,
        flops=float(counter.get_total_flops()), flops_source=INFER_FLOPS_SOURCE, peak=peak,
        note="eager",
    )  # fmt: skip


def _timed_row(
    name: str, batch: int, call: Callable[[int], Any], *, device: str, settings: PeerSettings,
    flops: float, flops_source: str, peak: float | None, note: str,
) -> Row:  # fmt: skip
    import torch

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    t = time_calls(call, sync=_sync(device), settings=settings.timing)
    memory = torch.cuda.max_memory_allocated() if device == "cuda" else None
    print(f"  {name}@{batch} took {time.perf_counter() - started:.1f}s", flush=True)
    return Row(
        name=name,
        batch=batch,
        step_s=t.median_s,
        spread_s=(t.p10_s, t.p90_s),
        peak_mem_bytes=memory,
        memory_source="torch.cuda.max_memory_allocated" if memory is not None else "",
        flops=flops,
        flops_source=flops_source,
        mfu=mfu(flops, t.median_s, peak),
        note=note,
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.torch_peers", description=__doc__.splitlines()[0]
    )
    p.add_argument("--json", required=True, help="where to write the rows")
    p.add_argument("--model", default="vit_base_patch16_224")
    p.add_argument("--depth", type=positive_int, default=None)
    p.add_argument("--image-size", type=positive_int, default=224)
    p.add_argument("--num-classes", type=positive_int, default=100)
    p.add_argument(
        "--train-batches", type=positive_int, nargs="*", default=[256],
        help="none: no training rows",
    )  # fmt: skip
    p.add_argument("--infer-batches", type=positive_int, nargs="+", default=[1, 64, 256])
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--warmup", type=positive_int, default=5)
    p.add_argument("--repeats", type=positive_int, default=20)
    p.add_argument("--input-sets", type=positive_int, default=3)
    p.add_argument(
        "--window", type=positive_int, default=1, help="calls per timed sample (bench.timing)"
    )
    p.add_argument(
        "--min-window-ms", type=float, default=0.0,
        help="more calls per sample where --window calls take less (bench.timing)",
    )  # fmt: skip
    p.add_argument("--only", type=row_regex, default=None, help="regex over row keys name@batch")
    return p


if __name__ == "__main__":
    exit_on_error(main)
