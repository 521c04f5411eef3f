"""bench.profile: per-kernel sums over device processes of a Perfetto trace, and a CPU smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import profile


def _meta(pid: int, name: str) -> dict:
    return {"ph": "M", "pid": pid, "name": "process_name", "args": {"name": name}}


def _kernel(pid: int, name: str, dur: float) -> dict:
    return {"ph": "X", "pid": pid, "tid": 1, "ts": 0.0, "dur": dur, "name": name}


EVENTS = [
    _meta(1, "/host:CPU"),
    _meta(7, "/device:GPU:0"),
    _kernel(1, "PjitFunction(step)", 5000.0),  # host event: not device time
    _kernel(7, "sm90_xmma_gemm_bf16bf16", 300.0),
    _kernel(7, "sm90_xmma_gemm_bf16bf16", 100.0),
    _kernel(7, "loop_multiply_fusion", 50.0),
    _kernel(7, "cudnn_fmha_fwd", 200.0),
    _kernel(7, "copy_transpose_3", 25.0),
    _kernel(7, "some_custom_kernel", 25.0),
    {"ph": "i", "pid": 7, "name": "instant", "ts": 1.0},  # not a complete event
]


def test_device_kernel_times_keeps_only_device_complete_events() -> None:
    assert profile.device_kernel_times(EVENTS) == {
        "sm90_xmma_gemm_bf16bf16": 400.0,
        "loop_multiply_fusion": 50.0,
        "cudnn_fmha_fwd": 200.0,
        "copy_transpose_3": 25.0,
        "some_custom_kernel": 25.0,
    }


def test_summarize_per_step_categories_and_ranking() -> None:
    summary = profile.summarize(profile.device_kernel_times(EVENTS), steps=2, top=2)
    assert summary["device_ms_per_step"] == pytest.approx(0.35)  # 700 us / 2 steps
    assert summary["categories_ms"] == pytest.approx(
        {"gemm": 0.2, "attention": 0.1, "fusion": 0.025, "copy": 0.0125, "other": 0.0125}
    )
    assert [k["name"] for k in summary["kernels"]] == ["sm90_xmma_gemm_bf16bf16", "cudnn_fmha_fwd"]
    assert summary["num_kernels"] == 5
    every = profile.summarize(
        profile.device_kernel_times(EVENTS), steps=2, top=0,
        calls=profile.device_kernel_calls(EVENTS),
    )  # fmt: skip
    assert len(every["kernels"]) == 5
    assert {k["name"]: k["calls"] for k in every["kernels"]} == {
        "sm90_xmma_gemm_bf16bf16": 1.0, "loop_multiply_fusion": 0.5, "cudnn_fmha_fwd": 0.5,
        "copy_transpose_3": 0.5, "some_custom_kernel": 0.5,
    }  # fmt: skip
    with pytest.raises(ValueError, match="steps"):
        profile.summarize({}, steps=0)


def test_device_occupancy_unions_overlapping_kernels_and_counts_gaps() -> None:
    def at(ts: float, dur: float, pid: int = 7) -> dict:
        return {**_kernel(pid, "k", dur), "ts": ts}

    events = [_meta(1, "/host:CPU"), _meta(7, "/device:GPU:0"), at(0.0, 9000.0, pid=1)]
    # [100, 400) and [300, 500) overlap (another stream): busy 400; then [700, 800): busy 100
    events += [at(100.0, 300.0), at(300.0, 200.0), at(700.0, 100.0)]
    got = profile.device_occupancy(events, steps=2)
    assert got == pytest.approx({"span_ms": 0.35, "busy_ms": 0.25, "idle_ms": 0.1, "launches": 1.5})
    assert profile.device_occupancy(EVENTS[:2], steps=1)["span_ms"] == 0.0
    with pytest.raises(ValueError, match="steps"):
        profile.device_occupancy(events, steps=0)


@pytest.mark.parametrize(
    ("kernel", "expected"),
    [("cutlass_80_tensorop", "gemm"), ("nvjet_sm90_tst_192x192_64x4_2x1_v_bz_coopB_TNN", "gemm"),
     ("flash_fwd", "attention"), ("memset32", "copy"),
     ("input_reduce_fusion_2", "fusion"), ("wgrad_kernel", "other")],
)  # fmt: skip
def test_category(kernel: str, expected: str) -> None:
    assert profile.category(kernel) == expected


def test_read_perfetto_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="perfetto_trace"):
        profile.read_perfetto(tmp_path)


def test_unknown_case_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown case"):
        next(profile.profile_cases(["lora-r8", "lora-r99"], size_name="tiny", batch=2, steps=1,
                                   out=tmp_path, attention="none"))  # fmt: skip


@pytest.mark.slow
def test_profile_tiny_on_cpu(tmp_path: Path) -> None:
    assert profile.main(["--cases", "lora-r8", "--size", "tiny", "--batch", "2", "--steps", "2",
                         "--out", str(tmp_path)]) == 0  # fmt: skip
    result = json.loads((tmp_path / "lora-r8.json").read_text())
    assert result["case"] == "lora-r8" and result["steps"] == 2
    assert list((tmp_path / "trace-lora-r8").rglob("perfetto_trace.json.gz"))


def test_weight_side_counts_for_the_tiny_vit(tmp_path: Path) -> None:
    from bench import weight_side

    out = tmp_path / "ws.json"
    assert (
        weight_side.main(["--size", "tiny", "--methods", "lora", "glora", "--out", str(out)]) == 0
    )
    rows = {r["method"]: r for r in json.loads(out.read_text())["rows"]}
    # one ViT-Ti block: LoRA's 6 kernels need a dot each for A·B plus two for the gradient
    assert rows["lora"]["dots"] >= 6
    assert rows["glora"]["dots"] > 0 and rows["glora"]["fusions"] > 0
    assert rows["glora"]["bytes_accessed"] > rows["lora"]["bytes_accessed"] > 0
