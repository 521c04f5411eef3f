"""Tests of bench/: timing, targets, reports, the activation-space LoRA prototype, and the whole
``python -m bench.run --suite=all --size=tiny`` on the CPU."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from autotune_dumps import logs, results

from bench import (
    count_flops,
    jax_suite,
    jax_train,
    low_rank_layer,
    models,
    report,
    run,
    tap_backward,
    timing,
    torch_peers,
    xla_flags,
    xla_stats,
)
from bench.end_to_end import E2E_ROW
from bench.jax_serve import INFER_VARIANTS
from bench.jax_train import CONV_CASES, SCALE_CASES, SCAN_CASES, VIT_CASES
from bench.models import vit_backbone
from bench.peaks import mfu, peak_bandwidth, peak_flops
from bench.report import merge_runs, row_peaks, with_flops
from bench.results import Row, format_table, load_rows, save_rows
from bench.sizes import SIZES
from bench.targets import Target, evaluate_targets, judged
from experiments.backbones import Backbone, BackboneConfig
from experiments.data.preprocess import normalize
from experiments.models.vit import vit
from flora_jax import CONV_TARGETS
from peft_core import flatten, full
from peft_core.targets import DENSE_TARGETS


class FakeClock:
    """A perf_counter that only moves when a test call advances ``now``."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("warmup,repeats,window", [(1, 3, 1), (2, 5, 1), (2, 4, 3)])
def test_time_calls_times_windows_of_calls_and_takes_percentiles(
    monkeypatch: pytest.MonkeyPatch, warmup: int, repeats: int, window: int
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", clock)
    durations = [100.0 + i for i in range(warmup)] + [
        float((i * 7) % 5 + 1) for i in range(repeats * window)
    ]
    seen: list[int] = []

    def call(i: int) -> int:
        seen.append(i)
        clock.now += durations[i]
        return i

    synced: list[int] = []
    settings = timing.TimingSettings(warmup=warmup, repeats=repeats, input_sets=2, window=window)
    result = timing.time_calls(call, sync=synced.append, settings=settings)
    per_call = np.asarray(durations[warmup:]).reshape(repeats, window).mean(axis=1)
    assert seen == list(range(warmup + repeats * window))
    # every warm-up call is synced alone, then only the last call of each window
    assert synced == list(range(warmup)) + [warmup + (k + 1) * window - 1 for k in range(repeats)]
    assert result.median_s == pytest.approx(float(np.median(per_call)))
    assert result.p10_s == pytest.approx(float(np.percentile(per_call, 10)))
    assert result.p90_s == pytest.approx(float(np.percentile(per_call, 90)))


@pytest.mark.parametrize("repeats,window", [(1, 1), (4, 2), (5, 3)])
def test_time_interleaved_takes_the_windows_in_turn_and_cancels_a_drift(
    monkeypatch: pytest.MonkeyPatch, repeats: int, window: int
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", clock)
    log: list[tuple[str, int]] = []

    def make(label: str, cost: float) -> Any:
        def call(i: int) -> tuple[str, int]:
            log.append((label, i))
            clock.now += cost + 0.01 * len(log)  # every call slower than the last: a drift
            return label, i

        return call

    settings = timing.TimingSettings(warmup=2, repeats=repeats, input_sets=2, window=window)
    synced: list[tuple[str, int]] = []
    result = timing.time_interleaved(
        {"a": make("a", 1.0), "b": make("b", 1.0)}, sync=synced.append, settings=settings
    )
    assert log[:4] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]  # warm-up, each call synced alone
    turns = [label for label, _ in log[4::window]]
    assert turns == [x for k in range(repeats) for x in ("ab" if k % 2 == 0 else "ba")]
    for label in "ab":  # each call counts its own i
        assert [i for x, i in log if x == label] == list(range(2 + repeats * window))
    assert len(synced) == 4 + 2 * repeats
    # equal calls under a linear drift: the ABBA order gives both the same median
    if repeats % 2 == 0:
        assert result["a"].median_s == pytest.approx(result["b"].median_s)
    cost = np.asarray([1.0 + 0.01 * (n + 1) for n in range(len(log))])  # of call n of the log
    a_samples = [
        cost[4 + 2 * k * window + (0 if k % 2 == 0 else window) :][:window].mean()
        for k in range(repeats)
    ]
    assert result["a"].median_s == pytest.approx(float(np.median(a_samples)))


@pytest.mark.parametrize(
    "costs,window,min_window,want",
    [
        ({"a": 1.0, "b": 2.0}, 2, 10.0, 10),  # the fastest call's 1 s a call: 10 calls
        ({"a": 3.0, "b": 2.0}, 2, 9.0, 5),  # 2 s a call: ceil(4.5)
        ({"a": 1.0}, 4, 2.0, 4),  # window calls already last long enough
        ({"a": 1.0}, 3, 0.0, 3),  # off
    ],
)  # fmt: skip
def test_time_interleaved_sizes_windows_to_last_min_window_s(
    monkeypatch: pytest.MonkeyPatch, costs: dict[str, float], window: int, min_window: float,
    want: int,
) -> None:  # fmt: skip
    clock = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", clock)
    calls: dict[str, list[int]] = {label: [] for label in costs}

    def make(label: str) -> Any:
        def call(i: int) -> int:
            calls[label].append(i)
            clock.now += costs[label]
            return i

        return call

    settings = timing.TimingSettings(
        warmup=1, repeats=3, input_sets=1, window=window, min_window_s=min_window
    )
    synced: list[int] = []
    result = timing.time_interleaved(
        {label: make(label) for label in costs}, sync=synced.append, settings=settings
    )
    sizing = window if min_window else 0  # one untimed window of each call sizes the rest
    for label, cost in costs.items():
        assert len(calls[label]) == 1 + sizing + 3 * want
        assert result[label].median_s == pytest.approx(cost)
    # per call: warm-up 1, sizing window 1 (if on), then one sync per timed window
    assert len(synced) == len(costs) * (1 + bool(min_window) + 3)


def test_timing_settings_describe_the_windows() -> None:
    assert timing.TimingSettings(repeats=7).describe() == "median of 7 calls, each timed alone"
    assert (
        timing.TimingSettings(repeats=10, window=5).describe()
        == "median of 10 windows of 5 calls launched back to back"
    )
    assert (
        timing.TimingSettings(repeats=10, window=5, min_window_s=0.05).describe()
        == "median of 10 windows of 5 or more calls, at least 50 ms, launched back to back"
    )
    with pytest.raises(ValueError, match="min_window_s"):
        timing.TimingSettings(min_window_s=-1.0)


@pytest.mark.parametrize("bad", [{"warmup": 0}, {"repeats": 0}, {"input_sets": 0}, {"window": 0}])
def test_timing_settings_refuse_zero(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        timing.TimingSettings(**bad)


@pytest.mark.parametrize(
    "name,peak",
    [("NVIDIA H100 80GB HBM3", 989.4e12), ("NVIDIA H200", 989.4e12), ("cpu", None),
     ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H100 NVL", 835e12),
     ("NVIDIA A100-SXM4-80GB", 312e12), ("TPU v4", 275e12), ("TPU v5 lite", 197e12),
     ("tpu: TPU v5 lite x8", 197e12), ("TPU v5", 459e12), ("TPU v5p", 459e12),
     ("TPU v6 lite", 918e12)],
)  # fmt: skip
def test_peak_and_mfu(name: str, peak: float | None) -> None:
    assert peak_flops(name) == peak
    got = mfu(2e12, 0.01, peak)
    assert got == (None if peak is None else pytest.approx(2e12 / 0.01 / peak))


@pytest.mark.parametrize(
    ("name", "flops", "bandwidth"),
    [("NVIDIA GH200 480GB", 989.4e12, None),  # 96 GB HBM3 or 144 GB HBM3e: its name does not say
     ("NVIDIA GH200 144G HBM3e", 989.4e12, 4.9e12), ("NVIDIA GH200 96GB HBM3", 989.4e12, 4.0e12),
     ("NVIDIA H200 NVL", 835e12, 4.8e12), ("NVIDIA H200", 989.4e12, 4.8e12),
     ("H200", 989.4e12, 4.8e12),
     ("NVIDIA H100 PCIe", 756e12, 2.0e12), ("NVIDIA H100 NVL", 835e12, 3.9e12),
     ("NVIDIA H20", None, None),
     ("NVIDIA H100 NVL PCIe", None, None)],  # two markers of two words, of other peaks
)  # fmt: skip
def test_peaks_match_whole_words_of_the_device_name(
    name: str, flops: float | None, bandwidth: float | None
) -> None:
    """A GH200 is no H200 (its bandwidth differs), an H200 NVL no H200 SXM (its clocks are
    lower); a device no marker tells has no peak, and no MFU."""
    assert (peak_flops(name), peak_bandwidth(name)) == (flops, bandwidth)
    assert (mfu(2e12, 0.01, peak_flops(name)) is None) is (flops is None)


def _row(name: str, batch: int, step_s: float, **kw: object) -> Row:
    return Row(name=name, batch=batch, step_s=step_s, **kw)  # type: ignore[arg-type]


def test_targets_ratio_time_and_missing() -> None:
    rows = [
        _row("jax/a", 256, 0.1),  # 2560 img/s
        _row("torch/b", 256, 0.2),  # 1280 img/s -> ratio 2.0
        _row("jax/a", 64, 0.1),  # no torch/b at 64: no check there
        _row("jax/search", 1000, 30.0, unit="cand"),
    ]
    targets = [
        Target("jax/a", "torch/b", min_ratio=1.5),
        Target("jax/a", "torch/b", min_ratio=2.5),
        Target("jax/search", max_seconds=60.0),
        Target("jax/missing", "torch/b", min_ratio=1.0),
    ]
    checks, missing = evaluate_targets(rows, targets)
    assert [(c.batch, c.value, c.passed) for c in checks] == [
        (256, pytest.approx(2.0), True),
        (256, pytest.approx(2.0), False),
        (1000, 30.0, True),
    ]
    assert missing == ["jax/missing vs torch/b: not measured"]
    assert checks[0].line().startswith("PASS jax/a@256 / torch/b@256 = 2.00x")
    assert checks[1].line(judged=False).startswith("n/a  jax/a@256 / torch/b@256 = 2.00x")
    assert [judged(s) for s in ("full", None, "tiny", "mixed")] == [True, True, False, False]
    h100, h200 = "gpu: NVIDIA H100 80GB HBM3 x1", "gpu: NVIDIA H200 x1"
    h100_x2 = "gpu: NVIDIA H100 80GB HBM3 x2"  # a host of two: not the targets' one H100
    assert [judged("full", d) for d in ([h100], [h200], [h100, h200], [h100, h100], [h100_x2])] == [
        True,
        False,
        False,
        True,
        False,
    ]
    # other H100 cards (lower clocks) and a GH200 are not the H100 SXM the targets are stated on
    others = ["gpu: NVIDIA H100 PCIe x1", "gpu: NVIDIA H100 NVL x1", "gpu: NVIDIA GH200 480GB x1"]
    assert [judged("full", [d]) for d in others] == [False, False, False]
    assert judged("full", ["gpu: NVIDIA H100 x1"])
    with pytest.raises(ValueError, match="either a reference or max_seconds"):
        Target("x")


def test_rows_round_trip_and_table(tmp_path: Path) -> None:
    rows = [
        _row(
            "jax/train/lora-r8",
            256,
            0.075,
            spread_s=(0.07, 0.08),
            flops=2.7e13,
            mfu=0.36,
            compile_s=41.26,
        ),
        _row("torch/infer/plain", 1, 0.002, peak_mem_bytes=2**30),
    ]
    path = tmp_path / "rows.json"
    save_rows(rows, path, device="gpu: test")
    loaded, extra = load_rows(path)
    assert loaded == rows and extra == {"device": "gpu: test"}
    assert json.loads(path.read_text())["rows"][0]["items_per_s"] == pytest.approx(256 / 0.075)
    table = format_table(rows).splitlines()
    assert len(table) == 4
    assert "| 3413.3 img/s | - | 27000.0 | 36.0% | 41.3 |" in table[2]
    assert "| 1.00 | - | - | - |" in table[3]
    task = _row("jax/e2e/task", 1, 268.1, unit="task")
    assert task.rate == "0.00373 task/s" and "| 0.00373 task/s |" in format_table([task])


def test_rows_are_saved_atomically_so_a_reader_never_finds_half_a_file(tmp_path: Path) -> None:
    # the suites rewrite their JSON after every row: bench.report on a run in progress (or a
    # kill mid-write) must find the last complete file, never a truncated one
    path = tmp_path / "run.jax.json"
    rows = [_row(f"jax/train/r{i}", 4, 0.01) for i in range(2000)]
    save_rows(rows, path)
    done = threading.Event()

    def rewrite() -> None:
        while not done.is_set():
            save_rows(rows, path, failed=[])

    writer = threading.Thread(target=rewrite)
    writer.start()
    unreadable, reads, until = 0, 0, time.monotonic() + 1.0
    try:
        while time.monotonic() < until:
            try:
                assert len(load_rows(path)[0]) == len(rows)
            except ValueError:
                unreadable += 1
            reads += 1
    finally:
        done.set()
        writer.join()
    assert reads > 0 and unreadable == 0, f"{unreadable} of {reads} reads found half a file"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


@pytest.mark.parametrize(
    "content, match",
    [
        (None, "no such file"),
        ("not json", "is not JSON"),
        ('{"device": "cuda:0"}', "holds no bench rows"),
        ('{"rows": [{"name": "x"}]}', r"rows\[0\] is not a bench row"),
    ],
)
def test_report_refuses_files_that_are_not_bench_output(
    tmp_path: Path, content: str | None, match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=match):
        load_rows(path)
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(path)])
    assert exit_info.value.code == 2 and str(path) in capsys.readouterr().err


def test_report_names_devices_and_judges_one_h100_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h100, h200 = "gpu: NVIDIA H100 80GB HBM3 x1", "gpu: NVIDIA H200 x1"
    ours, peers = [_row("jax/search/evolution", 1000, 20.0, unit="cand")], [_row("torch/x", 8, 1.0)]

    def printed(*files: tuple[str, list[Row], str | None]) -> str:
        paths = []
        for name, rows, device in files:
            paths.append(tmp_path / name)
            save_rows(rows, paths[-1], **({} if device is None else {"device": device}))
        assert report.main([str(p) for p in paths]) == 0
        return capsys.readouterr().out

    one = printed(("jax.json", ours, h100), ("torch.json", peers, h100))
    assert one.startswith(f"Device: {h100}\n") and "PASS jax/search/evolution: 20.0 s" in one
    two = printed(("jax.json", ours, h200), ("torch.json", peers, h100))
    assert two.startswith(f"Devices: {h200}; {h100}\nRows of several devices")
    assert "n/a  jax/search/evolution: 20.0 s" in two
    assert "n/a  jax/search" in printed(("jax.json", ours, h200))
    old = printed(("jax.json", ours, h100), ("torch.json", peers, None))
    assert f"No device recorded in: {tmp_path / 'torch.json'}" in old and "PASS jax/search" in old


def test_report_of_a_merged_file_keeps_every_device_it_merged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a report's --out (or bench.run's) read again: its rows came from two machines and a file
    # that named none, so no verdict, the same warnings as the first report
    h100, h100x8 = "gpu: NVIDIA H100 80GB HBM3 x1", "gpu: NVIDIA H100 80GB HBM3 x8"
    paths = [tmp_path / "jax.json", tmp_path / "torch.json", tmp_path / "old.json"]
    save_rows([_row("jax/search/evolution", 1000, 20.0, unit="cand")], paths[0], device=h100)
    save_rows([_row("torch/x", 8, 1.0)], paths[1], device=h100x8)
    save_rows([_row("jax/y", 8, 1.0)], paths[2])
    merged = tmp_path / "merged.json"
    assert report.main([*map(str, paths), "--out", str(merged)]) == 0
    first = capsys.readouterr().out
    _, info = merge_runs([merged])
    assert (info["devices"], info["unrecorded"]) == ([h100, h100x8], [str(paths[2])])
    assert report.main([str(merged)]) == 0
    again = capsys.readouterr().out
    assert again.startswith(f"Devices: {h100}; {h100x8}\nRows of several devices")
    assert f"No device recorded in: {paths[2]}" in again
    assert "n/a  jax/search/evolution: 20.0 s" in again and "PASS" not in again
    assert again == first


def test_report_merges_later_runs_and_fills_flops(tmp_path: Path) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    save_rows([_row("jax/x", 8, 1.0), _row("jax/y", 8, 2.0)], first, device="gpu: NVIDIA H100")
    save_rows([_row("jax/x", 8, 0.5)], second, skipped=["torch: none"], timing="windows of 5")
    rows, info = merge_runs([first, second])
    assert {r.key: r.step_s for r in rows} == {"jax/x@8": 0.5, "jax/y@8": 2.0}
    assert info["device"] == "gpu: NVIDIA H100" and info["skipped"] == ["torch: none"]
    assert info["timing"] == ["windows of 5"]
    filled = with_flops(rows, {"jax/y@8": 4e12}, source="counted", peak=1e15)
    y = next(r for r in filled if r.name == "jax/y")
    assert (y.flops, y.flops_source, y.mfu) == (4e12, "counted", pytest.approx(4e12 / 2.0 / 1e15))
    assert next(r for r in filled if r.name == "jax/x").flops is None
    # the report's --flops: jax/x's row came from b.json, which names no device: no MFU; jax/y's
    # from a.json, the H100's (as a torch file of no device beside a JAX run's, call 78)
    counts = tmp_path / "flops.json"
    counted = {"jax/x@8": 4e12, "jax/y@8": 4e12}
    counts.write_text(json.dumps({"source": "counted", "flops": counted}))
    out = tmp_path / "out.json"
    assert report.main([str(first), str(second), "--flops", str(counts), "--out", str(out)]) == 0
    mfus = {r.name: (r.flops, r.mfu) for r in load_rows(out)[0]}
    assert mfus == {"jax/x": (4e12, None), "jax/y": (4e12, pytest.approx(4e12 / 2.0 / 989.4e12))}
    assert report.main([str(first), "--flops", str(counts), "--out", str(out)]) == 0
    x = next(r for r in load_rows(out)[0] if r.name == "jax/x")
    assert x.mfu == pytest.approx(4e12 / 1.0 / 989.4e12)
    # a merge of devices of several peaks, read again: its rows' devices are not known
    a100 = tmp_path / "a100.json"
    save_rows([_row("jax/x", 8, 1.0)], a100, device="gpu: NVIDIA A100-SXM4-80GB")
    assert report.main([str(a100), str(first), "--out", str(out)]) == 0
    assert report.main([str(out), "--flops", str(counts), "--out", str(out)]) == 0
    assert {r.mfu for r in load_rows(out)[0]} == {None}


@pytest.mark.parametrize(
    "text,expected",
    [("all", list(run.SUITES)), ("search,train,search", ["search", "train"])],
)
def test_parse_suites(text: str, expected: list[str]) -> None:
    assert run.parse_suites(text) == expected


def test_parse_suites_unknown() -> None:
    with pytest.raises(ValueError, match="unknown suites"):
        run.parse_suites("train,fast")


def _peer_settings(only: str | None) -> torch_peers.PeerSettings:
    return torch_peers.PeerSettings(
        model="vit_tiny_patch16_224", depth=1, image_size=32, num_classes=5,
        train_batches=(4, 8), infer_batches=(1, 8), compile=True,
        timing=timing.TimingSettings(1, 3, 1, 1), only=only,
    )  # fmt: skip


def test_torch_peers_skipped_names_every_missing_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without torch the skip said "No module named 'peft'", the first import tried."""
    installed = {"timm"}  # whatever this machine has
    monkeypatch.setattr(torch_peers, "find_spec", lambda name: name if name in installed else None)
    out = tmp_path / "peers.json"
    assert torch_peers.main(["--json", str(out)]) == 0
    _, info = load_rows(out)
    assert info["skipped"] == [
        "torch peers: not installed: torch, peft (pip install torch timm peft)"
    ]
    # installed but broken (e.g. a peft that needs another transformers): skipped, saying why
    monkeypatch.setattr(torch_peers, "find_spec", lambda name: name)
    monkeypatch.setitem(sys.modules, "peft", None)  # its import raises ImportError
    assert torch_peers.main(["--json", str(out)]) == 0
    (skipped,) = load_rows(out)[1]["skipped"]
    assert skipped.startswith("torch peers: cannot import: ") and "peft" in skipped


@pytest.mark.parametrize(
    "only,expected",
    [
        (r"/lora-r8-compile@8$", ["torch/train/lora-r8-compile@8"]),
        (r"^torch/infer/", ["torch/infer/plain@1", "torch/infer/plain@8"]),
        (r"(lora|glora)-r8@4$", ["torch/train/lora-r8@4", "torch/train/glora-r8@4"]),
        (r"^jax/", []),
    ],
)
def test_torch_peers_plan_only_the_rows_matching_only(only: str, expected: list[str]) -> None:
    kinds = ["full", "linear", "lora-r8", "glora-r8"]
    every = torch_peers.planned_rows(_peer_settings(None), kinds)
    # per train batch: full, lora and glora eager and compiled, linear eager; then inference
    assert len(every) == 2 * 7 + 2
    assert every[:2] == [
        ("torch/train/full", 4, "full", False),
        ("torch/train/full-compile", 4, "full", True),
    ]
    plan = torch_peers.planned_rows(_peer_settings(only), kinds)
    assert [f"{name}@{batch}" for name, batch, _, _ in plan] == expected
    assert plan == [row for row in every if f"{row[0]}@{row[1]}" in expected]


class _FakeFlopCounter:
    """torch's FlopCounterMode, counting 7 FLOPs."""

    def __init__(self, display: bool) -> None:
        pass

    def __enter__(self) -> _FakeFlopCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def get_total_flops(self) -> int:
        return 7


def test_torch_inference_rows_say_their_flops_are_of_the_forward_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a stand-in torch (none here): the row's code runs, its model is an identity
    fake = types.ModuleType("torch")
    fake.inference_mode = fake.autocast = lambda *a, **k: contextlib.nullcontext()  # type: ignore[attr-defined]
    fake.bfloat16 = "bfloat16"  # type: ignore[attr-defined]
    counter = types.ModuleType("torch.utils.flop_counter")
    counter.FlopCounterMode = _FakeFlopCounter  # type: ignore[attr-defined]
    modules = {"torch": fake, "torch.utils": types.ModuleType("torch.utils")}
    for name, module in {**modules, "torch.utils.flop_counter": counter}.items():
        monkeypatch.setitem(sys.modules, name, module)
    model = types.SimpleNamespace(eval=lambda: lambda images: images)
    monkeypatch.setattr(torch_peers, "_model", lambda settings, kind, device: model)
    monkeypatch.setattr(torch_peers, "_inputs", lambda settings, batch, device: [(0, 0)])
    row = torch_peers._infer_row(_peer_settings(None), batch=8, device="cpu", peak=None)
    assert (row.name, row.flops) == ("torch/infer/plain", 7.0)
    assert "fwd" in row.flops_source and "bwd" not in row.flops_source


def test_torch_peers_refuse_a_bad_only_regex() -> None:
    with pytest.raises(ValueError, match="invalid --only regex"):
        torch_peers.planned_rows(_peer_settings("lora("), ["lora-r8"])


@pytest.mark.parametrize("size_name", ["tiny", "full"])
def test_run_times_the_torch_process_as_the_jax_rows(size_name: str) -> None:
    size = SIZES[size_name]
    command = run.torch_command(size, Path("t.json"), train_batches=[4], only=None)
    assert command[1:3] == ["-m", "bench.torch_peers"]
    settings = torch_peers.peer_settings(torch_peers.parser().parse_args(command[3:]))
    assert settings.timing == size.timing


def test_run_passes_only_to_the_torch_process() -> None:
    size = SIZES["tiny"]
    command = run.torch_command(size, Path("t.json"), train_batches=[4], only="lora")
    assert command[-2:] == ["--only", "lora"]
    assert "--only" not in run.torch_command(size, Path("t.json"), train_batches=[4], only=None)


def test_torch_peers_run_at_the_largest_train_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands: list[list[str]] = []

    def no_run(command: list[str], check: bool) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        return subprocess.CompletedProcess(command, 1)

    monkeypatch.setattr(run.subprocess, "run", no_run)
    argv = ["--suite=torch", "--size=tiny", "--train-batches", "4", "8", "2", "--out"]
    assert run.main([*argv, str(tmp_path / "b.json")]) == 1  # the process failed: see below
    ((torch,),) = [[c for c in commands if "bench.torch_peers" in c]]
    assert torch[torch.index("--train-batches") + 1 :][:2] == ["8", "--infer-batches"]


def test_a_failed_part_fails_the_run_after_the_other_parts_rows_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fake_run(command: list[str], check: bool) -> subprocess.CompletedProcess[str]:
        if command[1:3] == ["-m", "bench.torch_peers"]:
            return subprocess.CompletedProcess(command, 2)  # dies before writing its rows
        save_rows([_row("jax/infer/plain", 4, 0.1, flops=1.0)],
                  Path(command[command.index("--json") + 1]), device="cpu")  # fmt: skip
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(run.subprocess, "run", fake_run)
    out = tmp_path / "b.json"
    assert run.main(["--suite=torch,infer", "--size=tiny", "--out", str(out)]) == 1
    rows, info = load_rows(out)
    assert [r.key for r in rows] == ["jax/infer/plain@4"]
    assert info["failed"] == [{"name": "bench.torch_peers", "error": "exit 2, no rows"}]
    assert capsys.readouterr().err == "error: 1 parts failed: bench.torch_peers (exit 2)\n"


@pytest.mark.parametrize(
    ("failed", "error"),
    [
        ({"name": "jax/train/full@4", "error": "RuntimeError: boom"},
         "error: 1 rows failed: jax/train/full@4\n"),
        ({"name": "torch/train/full", "batch": 8, "error": "RuntimeError: boom"},
         "error: 1 rows failed: torch/train/full@8\n"),
    ],
)  # fmt: skip
def test_a_failed_row_fails_the_run_after_the_table_is_printed_and_written(
    failed: dict[str, Any], error: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The run exited 0 when a row failed in a process that itself exited 0."""

    def fake_run(command: list[str], check: bool) -> subprocess.CompletedProcess[str]:
        part = Path(command[command.index("--json") + 1])
        save_rows([_row("jax/infer/plain", 4, 0.1, flops=1.0)], part, device="cpu", failed=[failed])
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(run.subprocess, "run", fake_run)
    out = tmp_path / "b.json"
    assert run.main(["--suite=infer", "--size=tiny", "--out", str(out)]) == 1
    assert load_rows(out)[1]["failed"] == [failed]
    printed = capsys.readouterr()
    assert f"FAILED: {failed['name']}: RuntimeError: boom" in printed.out
    assert printed.err == error


def test_a_run_of_parts_with_other_attentions_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--isolate runs the training rows in processes of their own: each checks its attention,
    and bench.run's table says when the parts' settings differ."""
    settings = {"jax-rows": "attention: cuDNN (checked)", "jax": "attention: XLA (cuDNN failed)"}

    def fake_run(command: list[str], check: bool) -> subprocess.CompletedProcess[str]:
        part = Path(command[command.index("--json") + 1])
        kind = part.name.split(".")[-2]
        save_rows([_row(f"jax/{kind}/plain", 4, 0.1, flops=1.0)], part, device="cpu",
                  attention=settings[kind])  # fmt: skip
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(run.subprocess, "run", fake_run)
    out = tmp_path / "b.json"
    assert run.main(["--suite=train,infer", "--size=tiny", "--isolate", "--out", str(out)]) == 0
    _, info = load_rows(out)
    assert (info["attention"], info["attentions"]) == ("mixed", [*settings.values()])
    assert "Rows of several attention settings: " + "; ".join(settings.values()) in (
        capsys.readouterr().out
    )


def test_an_unknown_attention_is_refused_before_any_part_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(run.subprocess, "run", lambda *a, **k: pytest.fail("a part started"))
    with pytest.raises(SystemExit):
        run.main(["--attention", "fast", "--size=tiny"])
    assert "argument --attention: invalid choice: 'fast'" in capsys.readouterr().err


def _gpu_suite_and_cpu_count(
    rows: list[Row], counts: dict[str, float], calls: list[tuple[list[str], dict[str, Any]]]
) -> Any:
    """A ``subprocess.run`` for ``bench.run``: the JAX suite's process leaves ``rows`` as a GPU
    run does, ``bench.count_flops``'s writes ``counts``; each call is recorded."""

    def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append((command, kwargs))
        if command[1:3] == ["-m", "bench.jax_suite"]:
            part = Path(command[command.index("--json") + 1])
            save_rows(rows, part, device="gpu: NVIDIA H100 80GB HBM3 x1")
        else:
            out = Path(command[command.index("--out") + 1])
            out.write_text(json.dumps({"source": "counted on the CPU", "flops": counts}))
        return subprocess.CompletedProcess(command, 0)

    return fake_run


def test_rows_of_a_gpu_run_get_their_flops_counted_in_a_cpu_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        _row("jax/train/lora-r8", 4, 0.01), _row("jax/train/full", 4, 0.02, flops=5e9),
        _row("jax/infer/plain", 4, 0.002),
    ]  # fmt: skip
    counts = {"jax/train/lora-r8@4": 2e9, "jax/infer/plain@4": 1e9}
    calls: list[tuple[list[str], dict[str, Any]]] = []
    monkeypatch.setattr(run.subprocess, "run", _gpu_suite_and_cpu_count(rows, counts, calls))
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    out = tmp_path / "b.json"
    assert run.main(["--suite=train", "--size=tiny", "--out", str(out)]) == 0
    (suite, _), (count, how) = calls
    assert suite[1:3] == ["-m", "bench.jax_suite"]
    assert count == [
        sys.executable, "-m", "bench.count_flops", "--size", "tiny",
        "--keys", "jax/train/lora-r8@4", "--out", str(tmp_path / "b.flops.json"),
    ]  # fmt: skip
    assert how["check"] is True
    assert how["env"] == {**os.environ, "JAX_PLATFORMS": "cpu"}
    assert "$ JAX_PLATFORMS=cpu " in capsys.readouterr().out
    got = {r.key: (r.flops, r.flops_source, r.mfu) for r in load_rows(out)[0]}
    h100 = 989.4e12  # dense bf16 FLOP/s
    assert got == {
        "jax/train/lora-r8@4": (2e9, "counted on the CPU", pytest.approx(2e9 / 0.01 / h100)),
        "jax/train/full@4": (5e9, "", None),  # counted where it ran: kept
        "jax/infer/plain@4": (1e9, "counted on the CPU", pytest.approx(1e9 / 0.002 / h100)),
    }


@pytest.mark.parametrize(
    ("rows", "keys"),
    [
        # an inference row without FLOPs: counted (count_flops always counts those), no step
        ([_row("jax/infer/plain", 4, 0.1), _row("jax/train/full", 4, 0.1, flops=1.0)], []),
        ([_row("jax/scale/lora-r8/2dev", 8, 0.1), _row("jax/train-scan/lora-r8", 4, 0.1)],
         ["jax/scale/lora-r8/2dev@8", "jax/train-scan/lora-r8@4"]),
        # every counted row has its FLOPs (a CPU run): no process; rows it never counts
        ([_row("jax/train/full", 4, 0.1, flops=1.0), _row("jax/search/evolution", 4, 0.1),
          _row("torch/train/lora-r8", 4, 0.1)], None),
    ],
)  # fmt: skip
def test_flops_are_counted_on_the_cpu_for_the_rows_left_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: list[Row], keys: list[str] | None
) -> None:
    calls: list[tuple[list[str], dict[str, Any]]] = []
    monkeypatch.setattr(run.subprocess, "run", _gpu_suite_and_cpu_count(rows, {}, calls))
    assert run.main(["--suite=train", "--size=tiny", "--out", str(tmp_path / "b.json")]) == 0
    counted = [c for c, _ in calls if c[1:3] == ["-m", "bench.count_flops"]]
    if keys is None:
        assert counted == [] and len(calls) == 1
    else:
        ((command,),) = [counted]
        assert command[command.index("--keys") + 1 : command.index("--out")] == keys


def test_only_selects_rows_of_suites_measured_together(tmp_path: Path) -> None:
    recorder = jax_suite.Recorder(tmp_path / "r.json", r"^jax/infer/merged-glora@8$", {})
    rows = [_row("jax/infer/plain", 8, 1.0), _row("jax/infer/merged-glora", 8, 1.0)]
    planned = ["jax/infer/plain@8", "jax/infer/merged-glora@8"]
    assert recorder.measure("jax/infer", lambda: rows, planned) == rows[1:]
    assert recorder.measure("jax/search", lambda: rows, ["jax/search/evolution"]) == []


def _tiny_vit_f32(num_classes: int = 5) -> Backbone:
    model = vit("Ti", patch=16, depth=1, num_classes=num_classes)
    params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    params["head"]["kernel"] = jax.random.normal(jax.random.key(1), (192, num_classes))
    return Backbone(model, params, lambda x: normalize(x, "minus1_1"), DENSE_TARGETS, None)


def test_biases_only_case_trains_every_non_head_bias_and_nothing_else() -> None:
    backbone = _tiny_vit_f32()
    case = next(c for c in VIT_CASES if c.label == "biases-only")
    assert case.custom is not None
    adapter, forward = case.custom(backbone)
    aparams = adapter.init(jax.random.key(0), backbone.params)
    flat = flatten(backbone.params)
    want = {k for k in flat if k.endswith("/bias") and not k.startswith("head/")}
    assert set(flatten(aparams)) == want
    assert any("encoderblock" in k for k in want)
    images = jax.random.bits(jax.random.key(4), (2, 32, 32, 3), jnp.uint8)

    def loss(ap: Any) -> jax.Array:
        eff = adapter.apply(backbone.params, ap)
        return jnp.sum(forward(eff, images, train=False, rng=jax.random.key(0)) ** 2)

    grads = flatten(jax.grad(loss)(aparams))
    # every bias gets a gradient (input gradients flow through every layer), but the attention's
    # key biases: softmax cancels them, and the model leaves them out (zero, exactly)
    keys = {k for k in grads if k.endswith("/key/bias")}
    assert keys and all(float(jnp.max(jnp.abs(grads[k]))) == 0 for k in keys)
    assert all(float(jnp.max(jnp.abs(g))) > 0 for k, g in grads.items() if k not in keys)


@pytest.mark.slow
def test_run_all_tiny_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The smoke run measures nothing worth optimising: compile fast (-O0, from conftest.py's
    # XLA_FLAGS, which the suite's processes inherit), and compile a step that another row or
    # test already compiled only once (conftest.py's persistent cache: on the tiny model
    # grads="auto" taps no layer, so e.g. lora-r8 and lora-r8-weight are one program).
    # its processes (the JAX suite's parts, the torch peers) run on the CPU on a GPU machine too
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    out = tmp_path / "bench.json"
    assert run.main(["--suite=all", "--size=tiny", "--out", str(out)]) == 0
    rows, info = load_rows(out)
    size = SIZES["tiny"]
    expected = {
        *(f"jax/train/{c.label}@{b}" for c in VIT_CASES for b in size.train_batches),
        *(f"jax/train-scan/{c.label}@{b}" for c in SCAN_CASES for b in size.train_batches),
        *(f"jax/train-scan-remat/{c.label}@{b}" for c in SCAN_CASES for b in size.train_batches),
        *(f"jax/infer/{v}@{b}" for v in ("plain", "merged-glora") for b in size.infer_batches),
        f"jax/search/score-val{size.val_size}@{size.search.population}",
        *(f"jax/train-convnext-test/{c.label}@{b}" for c in CONV_CASES for b in size.conv_batches),
        f"{E2E_ROW}@1",
        *(f"jax/scale/{c.label}/1dev@{max(size.train_batches)}" for c in SCALE_CASES),
    }
    keys = {r.key for r in rows}
    assert expected <= keys, sorted(expected - keys)
    assert info["failed"] == []
    assert any(k.startswith("torch/") for k in keys) or info["skipped"]
    assert any(E2E_ROW in line for line in info["checks"])  # the 10-minute target is checked
    # ... and printed without a verdict: the targets are stated for --size full only
    assert info["size"] == "tiny" and all(line.startswith("n/a") for line in info["checks"])
    search = next(r for r in rows if r.name == "jax/search/evolution")
    assert search.batch >= size.search.population
    for r in rows:
        assert math.isfinite(r.step_s) and r.step_s > 0, r
        if r.name.startswith(("jax/train/", "jax/infer/")):  # compiled once, timed apart
            assert r.compile_s is not None and r.compile_s > 0, r
    assert info["checks"] and info["command"].startswith("python -m bench.run")
    assert info["timing"] and set(info["timing"]) <= {size.timing.describe()}


@pytest.mark.parametrize("bad", ["noflags", "=--x", "a b=--x", "x[1]=--y"])
def test_xla_flag_variant_refuses_bad_names(bad: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=FLAGS"):
        xla_flags.parse_variant(bad)


def test_xla_flags_runs_each_variant_in_its_own_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "flags.json"
    argv = [
        "--size=tiny", "--only", "^jax/train/linear@4$", "--out", str(out),
        "--variant", "plain=", "--variant", "opt0=--xla_backend_optimization_level=0",
    ]  # fmt: skip
    started: list[tuple[list[str], str]] = []
    run = subprocess.run

    def recorded(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        started.append((command, kwargs["env"]["XLA_FLAGS"]))
        return run(command, **kwargs)

    monkeypatch.setattr(xla_flags.subprocess, "run", recorded)
    assert xla_flags.main(argv) == 0
    inherited = os.environ.get("XLA_FLAGS", "").strip()  # e.g. conftest's
    assert [flags for _, flags in started] == [
        inherited, f"{inherited} --xla_backend_optimization_level=0".strip()
    ]  # fmt: skip
    assert all(command[1:3] == ["-m", "bench.jax_suite"] for command, _ in started)
    rows, info = load_rows(out)
    assert sorted(r.key for r in rows) == ["jax/train/linear[opt0]@4", "jax/train/linear[plain]@4"]
    assert info["variants"] == {"plain": "", "opt0": "--xla_backend_optimization_level=0"}
    (line,) = info["ratios"]
    opt0, plain = sorted(rows, key=lambda r: r.name)
    assert line.startswith("jax/train/linear[opt0]@4: ")
    assert line.endswith(f"= {opt0.items_per_s / plain.items_per_s:.3f}x plain")


def test_xla_flags_lists_the_rows_and_processes_that_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a variant whose row raised and one whose process died: listed, exit status 1 (their rows
    # and ratios were left out of the table without a word)
    out = tmp_path / "flags.json"
    argv = ["--size=tiny", "--only", "^jax/train/linear@4$", "--out", str(out),
            "--variant", "plain=", "--variant", "bad=--x", "--variant", "dead=--y"]  # fmt: skip

    def fake(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        part = Path(command[command.index("--json") + 1])
        if part.name.endswith(".plain.json"):
            save_rows([_row("jax/train/linear", 4, 0.01)], part, failed=[])
        elif part.name.endswith(".bad.json"):
            save_rows([], part, failed=[{"name": "jax/train/linear@4", "error": "XlaRuntimeError"}])
        return subprocess.CompletedProcess(command, 134 if ".dead." in part.name else 0)

    monkeypatch.setattr(xla_flags.subprocess, "run", fake)
    assert xla_flags.main(argv) == 1
    rows, info = load_rows(out)
    assert [r.key for r in rows] == ["jax/train/linear[plain]@4"]
    assert info["failed"] == [
        {"name": "jax/train/linear@4[bad]", "error": "XlaRuntimeError"},
        {"name": "[dead]", "error": "its process exited 134"},
    ]
    printed = capsys.readouterr().out
    assert "FAILED: jax/train/linear@4[bad]: XlaRuntimeError" in printed
    assert "FAILED: [dead]: its process exited 134" in printed


def test_with_window_overrides_only_the_window() -> None:
    tiny = SIZES["tiny"]
    assert tiny.with_window(None) is tiny
    three = tiny.with_window(3)
    assert three.timing == timing.TimingSettings(
        tiny.timing.warmup, tiny.timing.repeats, tiny.timing.input_sets, window=3
    )
    assert three.train_batches == tiny.train_batches
    with pytest.raises(ValueError, match="window"):
        tiny.with_window(0)


def test_low_rank_layer_forms_agree_and_are_timed(tmp_path: Path) -> None:
    """Every way of training a LoRA layer gives weight-space LoRA's gradients (bf16 inputs), and
    the CLI writes a timed row per (tokens, shape, form)."""
    out = tmp_path / "layer.json"
    assert (
        low_rank_layer.main(
            ["--tokens", "96", "--shapes", "16x24", "24x16", "--repeats", "2", "--json", str(out)]
        )
        == 0
    )
    rows = json.loads(out.read_text())["rows"]
    assert [(r["fan_in"], r["form"]) for r in rows] == [
        (i, f) for i in (16, 24) for f in low_rank_layer.FORMS
    ]
    for r in rows:
        assert r["ms"] > 0
        assert len(r["grad_rel_errors"]) == (0 if r["form"] == "frozen" else 3)
        assert all(e < 2e-2 for e in r["grad_rel_errors"]), r
    # the hand-written VJPs in float32 against autodiff of the weight-space form, and dW0
    x, a, b, w0, c = (t.astype(jnp.float32) for t in low_rank_layer.inputs(40, 12, 20, seed=3))

    def loss(form):
        return lambda *args: jnp.vdot(form(*args), c)

    want = jax.grad(loss(low_rank_layer.weight), argnums=(0, 1, 2, 3))(x, w0, a, b)
    for name in ("vjp-separate", "vjp-concat"):
        got = jax.grad(loss(low_rank_layer.FORMS[name]), argnums=(0, 1, 2, 3))(x, w0, a, b)
        chex.assert_trees_all_close(got, want, atol=1e-4, rtol=1e-4)


def test_tap_backward_forms_agree_and_are_timed(tmp_path: Path) -> None:
    """The one-read tap's dU, dV (Pallas interpreted, both sides: dy read once on 32x64, x on
    64x32) equal the XLA tap's, and the CLI writes a timed row per (shape, form)."""
    out = tmp_path / "tap.json"
    argv = ["--tokens", "80", "--shapes", "32x64", "64x32", "--tiles", "16,2,16,4,2",
            "--repeats", "2", "--json", str(out)]  # fmt: skip
    assert tap_backward.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    forms = ("xla", "one-read 16,2,16,4,2", tap_backward.BOUND)
    assert [(r["fan_in"], r["form"]) for r in rows] == [(i, f) for i in (32, 64) for f in forms]
    for r in rows:
        assert r["ms"] > 0 and r["min_gb_per_s"] > 0
        assert len(r["grad_rel_errors"]) == (0 if r["form"] == tap_backward.BOUND else 2)
        assert all(e < 1e-5 for e in r["grad_rel_errors"]), r
    with pytest.raises(SystemExit):
        tap_backward.main(["--tiles", "16,2,16"])


def test_tap_backward_records_tiles_that_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiles Triton cannot compile give a row with the error; the other forms are timed."""
    real = tap_backward.backward

    def failing(*_: Any) -> Any:
        raise RuntimeError("out of resource: shared memory")

    monkeypatch.setattr(
        tap_backward, "backward", lambda t: failing if t and t.warps == 3 else real(t)
    )
    tiles = [tap_backward.parse_tiles(t) for t in ("16,2,16,3,2", "16,2,16,4,2")]
    settings = timing.TimingSettings(warmup=1, repeats=1)
    rows = tap_backward.run([64], [(32, 64)], tiles, settings)
    assert [(r["form"], "ms" in r, r.get("error")) for r in rows] == [
        ("one-read 16,2,16,3,2", False, "RuntimeError: out of resource: shared memory"),
        ("xla", True, None),
        ("one-read 16,2,16,4,2", True, None),
        (tap_backward.BOUND, True, None),
    ]


def test_train_row_with_a_non_finite_loss_raises() -> None:
    """A step that computes NaN is reported, not timed as a result."""
    size = SIZES["tiny"]
    backbone = vit_backbone(size, attention=None)

    def nan_case(b: Backbone) -> tuple[Any, Any]:
        def forward(params: Any, images: jax.Array, *, train: bool, rng: jax.Array) -> jax.Array:
            return b.forward(params, images, train=train, rng=rng) * jnp.nan

        return full(targets=r".*/bias", exclude=r"head/.*"), forward

    bench = jax_train.TrainBench(
        backbone, "jax/train", size.image_size, size.num_classes, size.timing, None
    )
    case = jax_train.TrainCase("nan", VIT_CASES[0].method, custom=nan_case)
    with pytest.raises(FloatingPointError, match="jax/train/nan@2: loss nan"):
        jax_train.bench_train_step(bench, case, batch=2)


@pytest.mark.parametrize("bad", ["flash", "cuDNN", ""])
def test_choose_attention_refuses_other_implementations(bad: str) -> None:
    with pytest.raises(
        ValueError, match=re.escape(f"attention must be auto, cudnn, xla or none, got {bad!r}")
    ):
        models.choose_attention(bad)


@pytest.mark.parametrize(
    ("backend", "errors", "want"),
    [
        ("cpu", {}, ("xla", "attention: XLA")),  # no GPU: cuDNN is not tried
        ("gpu", {198: 1e-3, 200: 4e-3},
         ("cudnn", "attention: cuDNN (checked padded 197->198/200: rel. err. 4.0e-03)")),
        ("gpu", {198: 5e-2, 200: 1e-3},
         ("xla", "attention: XLA (cuDNN relative error 5.00e-02 vs XLA)")),
    ],
)  # fmt: skip
def test_auto_attention_takes_cudnn_where_it_matches_xla_at_every_padded_length(
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    errors: dict[int, float],
    want: tuple[str, str],
) -> None:
    """The ViT pads 197 tokens for cuDNN to 198 (inference, training at 256 or 32 per device)
    and to 200 (training at 64 per device): both are checked, the worse error decides."""
    monkeypatch.setattr(models.jax, "default_backend", lambda: backend)
    checked: list[int] = []
    monkeypatch.setattr(
        models, "_cudnn_attention_error", lambda padded: checked.append(padded) or errors[padded]
    )
    assert models.choose_attention("auto") == want
    assert checked == sorted(errors)


def test_auto_attention_falls_back_to_xla_naming_cudnns_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fails(padded: int) -> float:
        raise RuntimeError("cuDNN " + "x" * 300)

    monkeypatch.setattr(models.jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(models, "_cudnn_attention_error", fails)
    impl, note = models.choose_attention("auto")
    assert (impl, note) == (
        "xla",
        f"attention: XLA (cuDNN failed: RuntimeError: cuDNN {'x' * 194})",
    )


@pytest.mark.parametrize(
    ("backend", "errors", "fails"),
    [
        ("gpu", {198: 1e-3, 200: 4e-3}, None),
        ("gpu", {198: 5e-2, 200: 1e-3}, "cuDNN relative error 5.00e-02 vs XLA"),
        ("cpu", {}, "cuDNN failed: KeyError: 198"),  # tried on any backend when asked for
    ],
)  # fmt: skip
def test_cudnn_attention_asked_for_is_checked_and_never_replaced_by_xla(
    monkeypatch: pytest.MonkeyPatch, backend: str, errors: dict[int, float], fails: str | None
) -> None:
    monkeypatch.setattr(models.jax, "default_backend", lambda: backend)
    monkeypatch.setattr(models, "_cudnn_attention_error", lambda padded: errors[padded])
    if fails is None:
        assert models.choose_attention("cudnn")[0] == "cudnn"
        return
    want = f"--attention cudnn: {fails}; --attention auto falls back to XLA"
    with pytest.raises(RuntimeError, match=re.escape(want)):
        models.choose_attention("cudnn")


def test_the_cudnn_check_compares_cudnns_call_on_padded_tokens_with_xla(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real check, its cuDNN calls run through XLA's kernel with the very same arguments
    (cuDNN needs a GPU): the padded, masked tokens give XLA's attention of the unpadded ones
    (a check that let the queries attend to the padding would see a 0.5-1% error). XLA's
    kernel is jitted: one compile a shape, not one for each of its operations."""
    xla = jax.jit(functools.partial(jax.nn.dot_product_attention, implementation="xla"))
    calls: list[tuple[str | None, int]] = []

    def through_xla(
        query: jax.Array, *args: Any, implementation: str | None = None, **kw: Any
    ) -> jax.Array:
        calls.append((implementation, query.shape[1]))
        return xla(query, *args, **kw)

    monkeypatch.setattr(jax.nn, "dot_product_attention", through_xla)
    monkeypatch.setattr(models.jax, "default_backend", lambda: "gpu")
    impl, note = models.choose_attention("auto")
    found = re.fullmatch(
        r"attention: cuDNN \(checked padded 197->198/200: rel\. err\. (.+)\)", note
    )
    assert impl == "cudnn" and found, note
    assert float(found[1]) < 1e-4
    assert sorted(calls) == [("cudnn", 198), ("cudnn", 200), ("xla", 197), ("xla", 197)]


@pytest.mark.parametrize("scan, remat_policy", [(False, None), (True, "nothing_saveable")])
def test_a_named_vit_is_the_backbone_of_that_name_in_bf16(
    monkeypatch: pytest.MonkeyPatch, scan: bool, remat_policy: str | None
) -> None:
    loaded: list[tuple[BackboneConfig, int]] = []
    monkeypatch.setattr(
        models, "load_backbone", lambda config, *, num_classes: loaded.append((config, num_classes))
    )
    full = SIZES["full"]
    models.vit_backbone(full, attention="cudnn", scan=scan, remat_policy=remat_policy)
    config = BackboneConfig(
        name="vit-b16-random", image_size=224, dtype="bfloat16", attention="cudnn", scan=scan,
        remat=remat_policy is not None, remat_policy=remat_policy,
    )  # fmt: skip
    assert loaded == [(config, 100)]


def test_a_named_convnext_is_that_variant_in_bf16() -> None:
    """ConvNeXt-T (the full size's) for 100 classes, traced, not run: 28,589,128 parameters
    with ImageNet's 1000-class head (timm's convnext_tiny), 900 x (768 + 1) fewer."""
    built: list[Backbone] = []

    def params() -> Any:
        built.append(models.convnext_backbone(SIZES["full"]))
        return built[0].params

    shapes = jax.eval_shape(params)
    assert sum(math.prod(s.shape) for s in jax.tree.leaves(shapes)) == 28_589_128 - 900 * 769
    ((backbone,),) = [built]
    assert backbone.model.dtype == jnp.bfloat16 and backbone.compute_dtype == jnp.bfloat16
    assert backbone.targets == CONV_TARGETS and backbone.stacked is None


#: bench.count_flops counts on the CPU backend (its main selects it; XLA's GPU cost model has none)
counts_here = pytest.mark.skipif(
    jax.default_backend() != "cpu", reason="XLA's cost model counts FLOPs on the CPU backend only"
)


@counts_here
def test_xla_counts_a_scanned_models_blocks_once() -> None:
    # Why count_flops gives the scanned rows their unscanned twin's count: XLA's cost model counts
    # a while loop's body once (if this starts failing, the scanned rows can be counted as is).
    x = jnp.zeros((2, 16, 16, 3))

    def forward_flops(scan: bool) -> float:
        model = vit("Ti", patch=8, depth=3, num_classes=5, scan=scan)
        params = model.init(jax.random.key(0), x)["params"]
        return count_flops.lowered_flops(jax.jit(model.apply).lower({"params": params}, x))

    assert forward_flops(scan=True) < 0.6 * forward_flops(scan=False)


@counts_here
def test_count_all_on_the_tiny_size() -> None:
    tiny = SIZES["tiny"]
    # a population its calls of 2 subnets do not divide (the search pads the last call)
    size = dataclasses.replace(tiny, search=dataclasses.replace(tiny.search, population=5))
    assert size.configs_per_call == 2
    (batch,) = size.train_batches
    # the rows a GPU run left without FLOPs: a scanned row, a one-read row (its Pallas call is
    # opaque to the cost model), and a scaling row whose one-device step runs at a batch the
    # size does not list (as with bench.run --train-batches)
    keys = [f"jax/train-scan/lora-r8@{batch}", f"jax/train-scan-remat/lora-r8@{batch}",
            f"jax/train/lora-r8-pallas@{batch}", f"jax/scale/lora-r8/2dev@{4 * batch}"]  # fmt: skip
    counts = count_flops.count_all(size, keys=keys)
    assert {k for k in counts if "/train" in k} == {
        f"jax/train/lora-r8@{batch}", f"jax/train-scan/lora-r8@{batch}",
        f"jax/train-scan-remat/lora-r8@{batch}", f"jax/train/lora-r8-pallas@{batch}",
        f"jax/train/lora-r8@{2 * batch}", f"jax/train-scan/lora-r8@{2 * batch}",
        f"jax/train-scan-remat/lora-r8@{2 * batch}",
    }  # fmt: skip
    assert counts[f"jax/train-scan/lora-r8@{batch}"] == counts[f"jax/train/lora-r8@{batch}"] > 0
    # a rematerialised row counts the model's FLOPs, not the recomputation's
    assert counts[f"jax/train-scan-remat/lora-r8@{batch}"] == counts[f"jax/train/lora-r8@{batch}"]
    assert counts[f"jax/train/lora-r8-pallas@{batch}"] == counts[f"jax/train/lora-r8@{batch}"]
    assert counts[f"jax/train/lora-r8@{2 * batch}"] > counts[f"jax/train/lora-r8@{batch}"]
    scale_row = Row("jax/scale/lora-r8/2dev", 4 * batch, 1.0, unit="img")
    (filled,) = with_flops([scale_row], counts, source="cpu", peak=None)
    assert filled.flops == 2 * counts[f"jax/train/lora-r8@{2 * batch}"]
    widest = max(size.infer_batches)
    plain = counts[f"jax/infer/plain@{widest}"]
    assert counts[f"jax/infer/merged-glora@{widest}"] == plain
    # one training step (forward + backward) of a batch costs more than its forward alone
    assert counts[f"jax/train/lora-r8@{batch}"] > plain * batch / widest
    # 5 subnets a generation in 3 calls of 2 (the last padded: evaluate.make_config_scorer): 6
    search = counts[f"jax/search/score-val{size.val_size}@5"]
    assert search == pytest.approx(plain / widest * size.val_size * 6)


@pytest.mark.parametrize(
    ("key", "step"),
    [
        ("jax/train/lora-r8@4", "jax/train/lora-r8@4"),
        ("jax/train-convnext-test/full@4", "jax/train-convnext-test/full@4"),
        ("jax/train-scan-remat/lora-r8@4", "jax/train/lora-r8@4"),
        ("jax/train/flora-r8-pallas@4", "jax/train/flora-r8@4"),
        ("jax/scale/lora-r8/4dev@16", "jax/train/lora-r8@4"),
        ("jax/infer/plain@4", None),  # counted with the forward, always
        ("jax/search/score-val8@4", None),
    ],
)
def test_each_row_is_counted_by_its_own_step_or_its_twins(key: str, step: str | None) -> None:
    assert count_flops.counted_step(key) == step


class _Lowered:
    """A lowering whose cost analysis is ``cost``."""

    def __init__(self, cost: Any) -> None:
        self.cost = cost

    def cost_analysis(self) -> Any:
        return self.cost


@pytest.mark.parametrize("cost", [{"flops": 12.0}, [{"flops": 12.0}, {"flops": 5.0}]])
def test_lowered_flops_reads_the_cost_or_the_first_of_a_list(cost: Any) -> None:
    """jax's cost analysis has no fixed structure: older versions gave a list of dicts."""
    assert count_flops.lowered_flops(_Lowered(cost)) == 12.0


@pytest.mark.parametrize("cost", [[], [{}], {"flops": 0.0}])
@pytest.mark.parametrize(
    ("backend", "hint"), [("cpu", ""), ("gpu", ": count on the CPU, JAX_PLATFORMS=cpu")]
)
def test_lowered_flops_refuses_a_lowering_without_flops(
    monkeypatch: pytest.MonkeyPatch, cost: Any, backend: str, hint: str
) -> None:
    monkeypatch.setattr(count_flops.jax, "default_backend", lambda: backend)
    with pytest.raises(
        ValueError, match=f"^XLA reported no FLOPs for this lowering{re.escape(hint)}$"
    ):
        count_flops.lowered_flops(_Lowered(cost))


@pytest.fixture
def platforms_set(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The values jax_platforms is set to, recorded and not set (this process's backend runs
    already); every other jax config update goes through."""
    update, platforms = jax.config.update, []

    def record(name: str, value: Any) -> None:
        if name == "jax_platforms":
            platforms.append(value)
        else:
            update(name, value)

    monkeypatch.setattr(jax.config, "update", record)
    return platforms


@counts_here
def test_count_flops_writes_the_counts_of_the_keys_given(
    tmp_path: Path, platforms_set: list[str]
) -> None:
    out, key, tiny = tmp_path / "flops.json", "jax/train/linear@4", SIZES["tiny"]
    assert count_flops.main(["--size", "tiny", "--keys", key, "--out", str(out)]) == 0
    assert platforms_set == ["cpu"]  # on a GPU machine too
    written = json.loads(out.read_text())
    assert written["source"] == count_flops.SOURCE
    flops = written["flops"]
    infer = {f"jax/infer/{v}@{b}" for v in INFER_VARIANTS for b in tiny.infer_batches}
    search = f"jax/search/score-val{tiny.val_size}@{tiny.search.population}"
    assert set(flops) == {key, *infer, search}
    # a training step runs the forward of its batch, and more
    assert flops[key] > flops["jax/infer/plain@4"] > 0


@pytest.mark.parametrize(
    ("keys", "unknown"),
    [
        (["jax/train/lora-r8@3", "jax/train-scan-remat/glora-fixed@1",
          "jax/train-convnext-test/flora-r8-tap-all@2", "jax/scale/lora-r8/4dev@8"], []),
        (["jax/train/lora-r8@4", "jax/train/lora-r9@4", "jax/train-scan/full@4"],
         ["jax/train/lora-r9@4", "jax/train-scan/full@4"]),  # full has no scanned row
        (["jax/train/lora-r8@0", "jax/train/lora-r8@x", "jax/train/lora-r8"],
         ["jax/train/lora-r8@0", "jax/train/lora-r8@x", "jax/train/lora-r8"]),
        (["jax/scale/lora-r8/2dev@3", "jax/scale/full/2dev@4", "jax/infer/plain@4"],
         ["jax/scale/lora-r8/2dev@3", "jax/scale/full/2dev@4", "jax/infer/plain@4"]),
    ],
)  # fmt: skip
def test_count_all_refuses_keys_of_no_training_row_before_counting(
    keys: list[str], unknown: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Such keys were counted as nothing, without a word (or failed once their backbone was
    built, naming only the first)."""
    monkeypatch.setattr(count_flops, "vit_backbone", lambda *a, **k: pytest.fail("built"))
    if not unknown:
        count_flops.check_keys(SIZES["tiny"], keys)
        return
    with pytest.raises(ValueError, match=re.escape(f"{unknown} name no training row of size")):
        count_flops.count_all(SIZES["tiny"], keys=keys)


def test_isolate_runs_each_training_row_in_a_process_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands: list[list[str]] = []
    real_run = jax_suite.subprocess.run

    def run_and_record(command: list[str], **kwargs: Any) -> Any:
        commands.append(command)
        return real_run(command, **kwargs)

    monkeypatch.setattr(jax_suite.subprocess, "run", run_and_record)
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")  # the rows' processes, on a GPU machine too
    out = tmp_path / "iso.json"
    argv = ["--json", str(out), "--size=tiny", "--suites", "conv", "--isolate",
            "--only", "/(full|flora-r8)@", "--window", "1"]  # fmt: skip
    assert jax_suite.main(argv) == 0
    keys = ["jax/train-convnext-test/full@4", "jax/train-convnext-test/flora-r8@4"]
    assert [c[c.index("--only") + 1] for c in commands] == [f"^{re.escape(k)}$" for k in keys]
    assert all(c[c.index("--window") + 1] == "1" for c in commands)
    rows, info = load_rows(out)
    assert [r.key for r in rows] == keys
    assert keys == [k for k in jax_train.training_keys(SIZES["tiny"], "conv") if k in keys]
    assert info["failed"] == [] and info["isolated"] and info["device"].startswith("cpu")
    assert not (tmp_path / "iso.row.json").exists()


@pytest.mark.parametrize("train_batches", [None, ["2", "6"]])
def test_isolate_records_a_row_whose_process_died(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, train_batches: list[str] | None
) -> None:
    commands: list[list[str]] = []

    def died(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        return subprocess.CompletedProcess(command, -9)

    monkeypatch.setattr(jax_suite.subprocess, "run", died)

    def no_backend_here() -> None:
        raise AssertionError("the isolating parent asked for devices (it would hold the GPU)")

    monkeypatch.setattr(jax_suite.jax, "devices", no_backend_here)
    out = tmp_path / "iso.json"
    argv = ["--json", str(out), "--size=tiny", "--suites", "train", "--isolate", "--only", "linear"]
    batches = ["--train-batches", *train_batches] if train_batches else []
    assert jax_suite.main([*argv, *batches]) == 0
    rows, info = load_rows(out)
    linear = [
        "jax/train/linear@" + b for b in train_batches or map(str, SIZES["tiny"].train_batches)
    ]
    assert rows == []
    assert info["failed"] == [
        {"name": k, "error": "its process exited -9 with no row"} for k in linear
    ]
    # each row's process is given the batches (its key names one of them)
    given = [
        c[c.index("--train-batches") :][:3] if "--train-batches" in c else [] for c in commands
    ]
    assert given == [batches] * len(linear)


def test_isolate_keeps_the_attention_of_every_rows_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each row's process checks its attention itself: one that fell back to XLA makes the
    rows "mixed", not labelled with the last process's setting."""
    settings = iter(["attention: cuDNN (checked)", "attention: XLA (cuDNN failed)"] * 4)

    def measured(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        only = command[command.index("--only") + 1]
        key = next(k for k in jax_train.training_keys(SIZES["tiny"], "train") if re.search(only, k))
        name, batch = key.rsplit("@", 1)
        part = Path(command[command.index("--json") + 1])
        save_rows([_row(name, int(batch), 0.1)], part, attention=next(settings))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(jax_suite.subprocess, "run", measured)
    out = tmp_path / "iso.json"
    argv = ["--json", str(out), "--size=tiny", "--suites", "train", "--isolate",
            "--only", "/(linear|full)@4$"]  # fmt: skip
    assert jax_suite.main(argv) == 0
    rows, info = load_rows(out)
    assert len(rows) == 2
    assert info["attention"] == "mixed"
    assert info["attentions"] == ["attention: cuDNN (checked)", "attention: XLA (cuDNN failed)"]


def test_a_row_that_raises_is_recorded_failed_and_the_next_row_is_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    measured: list[str] = []

    def bench_train_step(
        bench: jax_train.TrainBench, case: jax_train.TrainCase, *, batch: int
    ) -> Row:
        measured.append(case.label)
        if case.label == "full":
            raise FloatingPointError("loss nan " + "x" * 3000)
        return _row(f"{bench.prefix}/{case.label}", batch, 0.01)

    monkeypatch.setattr(jax_suite.jax_train, "bench_train_step", bench_train_step)
    out = tmp_path / "rows.json"
    argv = ["--json", str(out), "--size=tiny", "--suites", "conv", "--only", "/(full|flora-r8)@"]
    assert jax_suite.main(argv) == 0
    assert measured == ["full", "flora-r8"]
    rows, info = load_rows(out)
    assert [r.key for r in rows] == ["jax/train-convnext-test/flora-r8@4"]
    error = "FloatingPointError: loss nan " + "x" * 3000
    assert info["failed"] == [{"name": "jax/train-convnext-test/full@4", "error": error[:2000]}]
    assert "Traceback" in capsys.readouterr().err


def test_isolate_dumps_each_rows_autotuning_and_reports_a_slower_pick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each child gets its own dump flags; a fake child writes its row and the dumps a GPU
    process would (the second with a stalled best conv algorithm), and the parent's report
    names the conv picked slower in the second row's process."""
    folder = tmp_path / "autotune"
    children: list[str] = []

    def fake_child(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        flags = dict(f.removeprefix("--").split("=", 1) for f in kwargs["env"]["XLA_FLAGS"].split())
        logs_path = Path(flags["xla_gpu_dump_autotune_logs_to"])
        picks_path = Path(flags["xla_gpu_dump_autotune_results_to"])
        assert logs_path.parent == folder and picks_path.parent == folder
        stalled = bool(children)
        logs_path.write_text(logs((777_000_000 if stalled else 87_000, 938_000)))
        picks_path.write_text(results(22 if stalled else 5))
        key = command[command.index("--only") + 1].strip("^$").replace("\\", "")
        name, batch = key.rsplit("@", 1)
        save_rows([Row(name, int(batch), 0.01)], Path(command[command.index("--json") + 1]))
        children.append(logs_path.name)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(jax_suite.subprocess, "run", fake_child)
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_enable_command_buffer=")
    out = tmp_path / "iso.json"
    argv = ["--json", str(out), "--size=tiny", "--suites", "conv", "--isolate",
            "--only", "/(full|flora-r8)@", "--autotune-logs", str(folder)]  # fmt: skip
    assert jax_suite.main(argv) == 0
    assert children == ["jax_train-convnext-test_full@4.logs.txt",
                        "jax_train-convnext-test_flora-r8@4.logs.txt"]  # fmt: skip
    assert [r.key for r in load_rows(out)[0]] == [
        "jax/train-convnext-test/full@4", "jax/train-convnext-test/flora-r8@4"
    ]  # fmt: skip
    report = (folder / "report.txt").read_text()
    assert report.strip() in capsys.readouterr().out
    assert "run 2 (" in report and "1 measured over 100 ms" in report
    assert "over 1.5x (and 0.01 ms more than) another run's: 1" in report
    assert "run 2: CUDNN algo 22 [2=5] ws 0: 0.938 ms" in report


@pytest.mark.parametrize(
    "main, argv",
    [
        (jax_suite.main, ["--json", "x.json", "--suites", "conv", "--autotune-logs", "d"]),
        (run.main, ["--suite", "conv", "--autotune-logs", "d"]),
    ],
)
def test_autotune_logs_needs_isolate(
    main: Any, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    assert "--autotune-logs needs --isolate" in capsys.readouterr().err


def test_isolate_refuses_suites_that_are_not_training_rows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        jax_suite.main(["--json", "x.json", "--suites", "conv", "infer", "--isolate"])
    assert "not ['infer']" in capsys.readouterr().err


def test_the_scanned_suites_build_their_vits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "scan": blocks in one nn.scan; "scan-remat": the same, rematerialised with the suite's
    policy (rows named by their suite's prefix)."""
    built: dict[str, tuple[str, bool, bool, str | None]] = {}

    def record(recorder: Any, bench: jax_train.TrainBench, size: Any, suite: str) -> None:
        config = bench.backbone.model.config
        built[suite] = (bench.prefix, config.scan, config.remat, config.remat_policy)

    monkeypatch.setattr(jax_suite, "_train_rows", record)
    recorder = jax_suite.Recorder(tmp_path / "rows.json", None, {})
    jax_suite.run_suites(SIZES["tiny"], ["scan", "scan-remat"], attention="none", recorder=recorder)
    assert built == {
        "scan": ("jax/train-scan", True, False, None),
        "scan-remat": ("jax/train-scan-remat", True, True, "dots_with_no_batch_dims_saveable"),
    }


@pytest.mark.parametrize("suite", jax_train.TRAINING_SUITES)
def test_training_keys_name_every_case_at_every_batch(suite: str) -> None:
    size = SIZES["tiny"]
    prefix, cases, batches = jax_train.training_suite(size, suite)
    keys = jax_train.training_keys(size, suite)
    assert len(keys) == len(set(keys)) == len(cases) * len(batches)
    assert all(k.startswith(f"{prefix}/") for k in keys)
    with pytest.raises(ValueError, match="not a training suite"):
        jax_train.training_suite(size, "infer")


@pytest.mark.parametrize("isolate", [False, True])
def test_run_isolates_the_training_suites_only_when_asked(isolate: bool) -> None:
    size = SIZES["tiny"]
    commands = run.jax_commands(
        size, Path("out/b.json"), suites=["infer", "conv", "train", "search"], attention="xla",
        only="lora", train_batches=[4], isolate=isolate,
        autotune_logs=Path("out/at") if isolate else None,
    )  # fmt: skip

    def suites_of(command: list[str]) -> list[str]:
        start = command.index("--suites") + 1
        return command[start : command.index("--attention")]

    if not isolate:
        (command,) = commands
        assert suites_of(command) == ["infer", "conv", "train", "search"]
        assert (
            "--isolate" not in command and command[command.index("--json") + 1] == "out/b.jax.json"
        )
        return
    rows, rest = commands
    assert suites_of(rows) == ["conv", "train"] and rows[-3:] == [
        "--isolate", "--autotune-logs", "out/at"
    ]  # fmt: skip
    assert suites_of(rest) == ["infer", "search"]
    assert "--isolate" not in rest and "--autotune-logs" not in rest
    assert [c[c.index("--json") + 1] for c in commands] == ["out/b.jax-rows.json", "out/b.jax.json"]
    assert all(c[c.index("--only") + 1] == "lora" for c in commands)


@pytest.mark.parametrize(
    "module",
    [
        "bench.autotune_log", "bench.count_flops", "bench.end_to_end", "bench.hlo_kernels",
        "bench.jax_suite", "bench.low_rank_layer", "bench.profile", "bench.profile_diff",
        "bench.report", "bench.run", "bench.tap_backward", "bench.torch_peers",
        "bench.weight_side", "bench.xla_flags", "experiments.models.convnext_checkpoint",
    ],
)  # fmt: skip
def test_cli_usage_names_the_module(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--help shows the command to type (it showed "usage: run.py" for ``python -m bench.run``)."""
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module).main(["--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m {module} ")


@pytest.mark.parametrize(
    ("target", "passed"),
    [(Target("jax/a", "torch/b", min_ratio=2.0), True),  # exactly 2x: met
     (Target("jax/a", "torch/b", min_ratio=2.5), False),
     (Target("jax/search", max_seconds=30.0), True),  # exactly 30 s: met
     (Target("jax/search", max_seconds=29.5), False)],
)  # fmt: skip
def test_a_target_met_exactly_passes(target: Target, passed: bool) -> None:
    rows = [
        _row("jax/a", 8, 0.25),  # 32 img/s
        _row("torch/b", 8, 0.5),  # 16 img/s: ratio 2 (exact in binary)
        _row("jax/search", 1000, 30.0, unit="cand"),
    ]
    (check,), missing = evaluate_targets(rows, [target])
    assert missing == [] and check.passed is passed
    assert check.line().startswith("PASS" if passed else "MISS")


@pytest.mark.parametrize(
    ("target", "value", "printed"),
    [(Target("jax/a", "torch/b", min_ratio=0.9), 0.8979, "0.898x"),  # 2 digits: "0.90x"
     (Target("jax/a", "torch/b", min_ratio=0.98), 0.97899, "0.979x"),
     (Target("jax/a", "torch/b", min_ratio=1.5), 1.49996, "1.49996x"),
     (Target("jax/a", "torch/b", min_ratio=1.5), 1.5211, "1.52x"),
     (Target("jax/a", "torch/b", min_ratio=1.5), 1.50004, "1.50x"),
     (Target("jax/search", max_seconds=60.0), 60.04, "60.04 s"),  # 1 digit: "60.0 s"
     (Target("jax/search", max_seconds=60.0), 59.96, "60.0 s"),
     (Target("jax/search", max_seconds=60.0), 27.82, "27.8 s")],
)  # fmt: skip
def test_a_check_prints_its_value_on_the_side_of_the_target_its_verdict_says(
    target: Target, value: float, printed: str
) -> None:
    # ratio: row / reference throughput at one batch; seconds: the row's step
    step = 1.0 / value if target.reference is not None else value
    rows = [_row(target.row, 8, step), _row("torch/b", 8, 1.0)]
    (check,), _ = evaluate_targets(rows, [target])
    shown = re.search(r"= (\S+)x \(|: (\S+) s \(", check.line())
    assert shown is not None and printed.rstrip("x s") in shown.groups()
    number = float(printed.rstrip("x s"))
    if target.min_ratio is not None:
        assert (number >= target.min_ratio) is check.passed
    else:
        assert target.max_seconds is not None and (number <= target.max_seconds) is check.passed


def test_target_with_a_reference_needs_min_ratio() -> None:
    with pytest.raises(ValueError, match="a reference needs min_ratio"):
        Target("jax/a", "torch/b")


def test_report_merges_sizes_and_keeps_the_first_device(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h100 = "gpu: NVIDIA H100 80GB HBM3 x1"
    rows = [_row("jax/search/evolution", 1000, 20.0, unit="cand")]
    paths = [tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"]
    save_rows(rows, paths[0], device=h100, size="full")
    save_rows(rows, paths[1], device=h100, size="tiny")
    save_rows(rows, paths[2], device=h100, size="full")
    _, info = merge_runs(paths)
    assert info["size"] == "mixed"  # files of two sizes: no verdict, whatever comes last
    assert report.main([str(p) for p in paths]) == 0
    assert "n/a  jax/search/evolution" in capsys.readouterr().out
    # "device": the first file's; a row's MFU takes the peak of the device of its own file
    a100 = "gpu: NVIDIA A100-SXM4-80GB"
    save_rows(rows, paths[1], device=a100, attention="cudnn")
    save_rows(rows, paths[2], device=h100, attention="xla")
    _, info = merge_runs(paths[1:])
    assert (info["device"], info["attention"]) == (a100, "mixed")
    assert info["devices"] == [a100, h100] and info["attentions"] == ["cudnn", "xla"]
    flops, out = tmp_path / "flops.json", tmp_path / "out.json"
    counted = {"jax/search/evolution@1000": 6.24e14}
    flops.write_text(json.dumps({"source": "counted", "flops": counted}))
    assert report.main([*map(str, paths[1:]), "--flops", str(flops), "--out", str(out)]) == 0
    (row,), _ = load_rows(out)
    assert row.mfu == pytest.approx(6.24e14 / 20.0 / 989.4e12)  # c.json's H100 (A100's: 0.1)
    assert report.main([*map(str, paths[2:0:-1]), "--flops", str(flops), "--out", str(out)]) == 0
    (row,), _ = load_rows(out)
    assert row.mfu == pytest.approx(6.24e14 / 20.0 / 312e12)  # now b.json's A100 row


@pytest.mark.parametrize(
    ("devices", "peak"),
    [(["gpu: NVIDIA H100 80GB HBM3", "gpu: NVIDIA H100"], 989.4e12),
     (["gpu: NVIDIA H100", "gpu: NVIDIA H200"], 989.4e12),  # two devices of one peak
     (["gpu: NVIDIA H100", "gpu: NVIDIA A100-SXM4-80GB"], None),
     (["gpu: NVIDIA H100", "cpu"], None),  # a row of the one with no peak takes none
     (["cpu", "gpu: NVIDIA H100"], None), ([], None)],
)  # fmt: skip
def test_a_merged_files_rows_take_the_one_peak_of_every_device_it_merged(
    tmp_path: Path, devices: list[str], peak: float | None
) -> None:
    """A merge's row does not say which device measured it: its MFU needs one peak for all."""
    path = tmp_path / "merged.json"
    extra = {"device": devices[0], "devices": devices} if devices else {}
    save_rows([_row("jax/x", 8, 1.0)], path, **extra)
    assert row_peaks([path]) == {"jax/x@8": peak}


@pytest.mark.parametrize(
    ("settings", "merged"),
    [(["cudnn", "cudnn"], {"attention": "cudnn", "attentions": ["cudnn"]}),
     (["cudnn", "xla"], {"attention": "mixed", "attentions": ["cudnn", "xla"]}),
     ([None, "xla", "xla"], {"attention": "xla", "attentions": ["xla"]}),  # torch's: none
     (["xla", None, "cudnn"], {"attention": "mixed", "attentions": ["xla", "cudnn"]}),
     ([None, None], {})],
    ids=["agree", "differ", "torch_none", "differ_around_none", "none"],
)  # fmt: skip
def test_merged_rows_are_not_labelled_with_another_files_attention(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    settings: list[str | None],
    merged: dict[str, Any],
) -> None:
    """Each file's rows were measured with its own attention (a process whose cuDNN check
    failed fell back to XLA): files that disagree merge to "mixed", with every setting, also
    when the merge is merged again, and the report says so."""
    paths = []
    for i, attention in enumerate(settings):
        paths.append(tmp_path / f"{i}.json")
        extra = {} if attention is None else {"attention": attention}
        save_rows([_row(f"jax/x{i}", 8, 1.0)], paths[-1], device="gpu: NVIDIA H100", **extra)
    _, info = merge_runs(paths)
    assert {k: info[k] for k in ("attention", "attentions") if k in info} == merged
    out = tmp_path / "out.json"
    assert report.main([*map(str, paths), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    several = "Rows of several attention settings: xla; cudnn"
    assert (several in printed) is (merged.get("attentions") == ["xla", "cudnn"])
    assert ("several attention settings" in printed) is (len(merged.get("attentions", [])) > 1)
    _, again = merge_runs([out, tmp_path / "1.json"])
    assert {k: again[k] for k in ("attention", "attentions") if k in again} == merged


@pytest.mark.parametrize(
    ("batch", "step_s", "unit", "rate"),
    [(256, 0.075, "img", "3413.3 img/s"), (10, 1.0, "img", "10.0 img/s"),
     (5, 1.5, "img", "3.33 img/s"), (1, 268.1, "task", "0.00373 task/s")],
)  # fmt: skip
def test_row_rate_prints_three_digits_below_ten(
    batch: int, step_s: float, unit: str, rate: str
) -> None:
    assert _row("jax/x", batch, step_s, unit=unit).rate == rate


@pytest.mark.parametrize(
    ("name", "peak"),
    [("nvidia h100 80gb hbm3", 989.4e12), ("Tpu V5 Lite", 197e12), ("tpu v4", 275e12)],
)
def test_peak_markers_match_any_case(name: str, peak: float) -> None:
    assert peak_flops(name) == peak


def test_mfu_of_no_time_is_none() -> None:
    assert mfu(1e12, 0.0, 989.4e12) is None
    assert mfu(None, 1.0, 989.4e12) is None and mfu(1e12, 1.0, None) is None


@pytest.mark.skipif(
    jax.default_backend() != "cpu",
    reason="XLA's GPU cost model counts no FLOPs (bench.run counts them on the CPU; call 181)",
)
@pytest.mark.parametrize("donate", [False, True])
def test_compiled_stats_count_flops_and_the_executables_memory(donate: bool) -> None:
    # x * 2 on 256 x 256 float32: one multiply per element; the argument and the result take
    # 256 KiB each, and a donated argument's buffer holds the result
    x = jnp.ones((256, 256), jnp.float32)
    lowered = jax.jit(lambda x: x * 2.0, donate_argnums=(0,) if donate else ()).lower(x)
    compiled, stats = xla_stats.compile_with_stats(lowered)
    assert stats.flops == 256 * 256
    assert stats.peak_bytes == (1 if donate else 2) * 256 * 256 * 4
    assert stats.compile_s is not None and stats.compile_s > 0
    # a function without arithmetic has no FLOP count, not a count of 0
    copy = jax.jit(lambda x: x).lower(x)
    assert xla_stats.compiled_stats(copy, copy.compile()).flops is None


def test_timed_row_takes_the_median_and_the_spread() -> None:
    stats = xla_stats.CompiledStats(flops=4e12, peak_bytes=2**30, compile_s=3.0)
    row = xla_stats.timed_row(
        "jax/x", 8, timing.Timing(0.5, 0.4, 0.7), stats, peak_flops=1e15, note="n"
    )
    assert (row.step_s, row.spread_s) == (0.5, (0.4, 0.7))
    assert (row.flops, row.peak_mem_bytes, row.compile_s) == (4e12, 2**30, 3.0)
    assert row.mfu == pytest.approx(4e12 / 0.5 / 1e15) and row.flops_source
    unknown = xla_stats.timed_row("jax/x", 8, timing.Timing(0.5, 0.4, 0.7),
                                  stats._replace(flops=None), peak_flops=1e15, note="")  # fmt: skip
    assert (unknown.flops, unknown.flops_source, unknown.mfu) == (None, "", None)
