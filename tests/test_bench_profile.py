"""bench.profile: per-kernel sums over device processes of a Perfetto trace, and a CPU smoke run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import hlo_kernels, profile
from bench.peaks import peak_bandwidth


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
     ("input_reduce_fusion_2", "fusion"), ("softmax_kernel", "other"),
     ("void cudnn::cnn::conv2d_grouped_direct_kernel<false, true>", "conv"),
     ("wgrad2d_c1_k1_nhwc", "conv"), ("conv2d_c1_k1_nhwc_specialized", "conv"),
     ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16", "attention"),
     ("void cudnn::fusion::convert_dq_to_16bits<true>", "attention"),
     ("wrapped_convert_18", "other")],
)  # fmt: skip
def test_category(kernel: str, expected: str) -> None:
    assert profile.category(kernel) == expected


def test_read_perfetto_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="perfetto_trace"):
        profile.read_perfetto(tmp_path)


@pytest.mark.parametrize(
    ("model", "labels", "match"),
    [("vit", ["lora-r8", "lora-r99"], "unknown vit case 'lora-r99'"),
     ("convnext", ["flora-r8", "glora-fixed"], "unknown convnext case 'glora-fixed'"),
     ("resnet", ["full"], "unknown model 'resnet'")],
)  # fmt: skip
def test_unknown_case_or_model_is_refused(
    tmp_path: Path, model: str, labels: list[str], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        next(profile.profile_cases(labels, size_name="tiny", batch=2, steps=1, out=tmp_path,
                                   attention="none", model=model))  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("model", "case"), [("vit", "lora-r8"), ("convnext", "flora-r8")])
def test_profile_tiny_on_cpu(tmp_path: Path, model: str, case: str) -> None:
    assert profile.main(["--model", model, "--cases", case, "--size", "tiny", "--batch", "2",
                         "--steps", "2", "--out", str(tmp_path)]) == 0  # fmt: skip
    result = json.loads((tmp_path / f"{case}.json").read_text())
    assert result["case"] == case and result["steps"] == 2
    assert list((tmp_path / f"trace-{case}").rglob("perfetto_trace.json.gz"))
    hlo = hlo_kernels.read_text(tmp_path / f"{case}.hlo.txt.gz")
    assert hlo.startswith("HloModule") and len(hlo_kernels.parse_hlo(hlo)) > 100


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


# A GPU step's HLO in XLA's printed form: a cuBLAS call whose result is (output, workspace), a
# fusion reading element 0 of it, and a second instruction launching the same kernel.
GPU_HLO = """
%gemm_fusion_dot.5_computation (parameter_0.1: bf16[2,6,4], parameter_1.1: bf16[2,6,3]) -> bf16[2,4,3] {
  %parameter_0.1 = bf16[2,6,4]{2,1,0} parameter(0)
  %transpose.1 = bf16[2,4,6]{2,1,0} transpose(%parameter_0.1), dimensions={0,2,1}
  %parameter_1.1 = bf16[2,6,3]{2,1,0} parameter(1)
  ROOT %dot.1 = bf16[2,4,3]{2,1,0} dot(%transpose.1, %parameter_1.1), lhs_batch_dims={0}, lhs_contracting_dims={2}, rhs_batch_dims={0}, rhs_contracting_dims={1}
}

ENTRY %main.1 (p.1: bf16[4,8], w.3: bf16[8,16], b.4: f32[16], x.5: bf16[2,6,4], g.6: bf16[2,6,3]) -> bf16[4,16] {
  %p.1 = bf16[4,8]{1,0} parameter(0), metadata={scheduling_name="p.1"}
  %w.3 = bf16[8,16]{1,0} parameter(1)
  %b.4 = f32[16]{0} parameter(2)
  %custom-call.2 = (bf16[4,16]{1,0}, s8[1024]{0}) custom-call(%p.1, %w.3), custom_call_target="__cublas$lt$matmul", metadata={op_name="jit(step)/dot_general"}, backend_config={"gemm_backend_config":{"dot_dimension_numbers":{"lhs_contracting_dimensions":["1"],"rhs_contracting_dimensions":["0"],"lhs_batch_dimensions":[],"rhs_batch_dimensions":[]}}}
  %loop_add_fusion.7 = bf16[4,16]{1,0} fusion(%custom-call.2#0, %b.4), kind=kLoop, calls=%fused_add.7, metadata={op_name="jit(step)/block_0/add" deduplicated_name="loop_add_fusion" scheduling_name="loop_add_fusion.7"}
  %x.5 = bf16[2,6,4]{2,1,0} parameter(3)
  %g.6 = bf16[2,6,3]{2,1,0} parameter(4)
  %gemm_fusion_dot.5 = bf16[2,4,3]{2,1,0} fusion(%x.5, %g.6), kind=kCustom, calls=%gemm_fusion_dot.5_computation, metadata={op_name="jit(step)/transpose"}
  ROOT %loop_add_fusion.8 = bf16[4,16]{1,0} fusion(%loop_add_fusion.7, /*index=1*/%b.4), kind=kLoop, calls=%fused_add.7, metadata={op_name="jit(step)/block_1/add" deduplicated_name="loop_add_fusion"}
}
"""  # noqa: E501


@pytest.mark.parametrize(
    ("shape", "expected"),
    [("bf16[256,208,768]{2,1,0}", 256 * 208 * 768 * 2), ("(f32[2,3]{1,0}, s8[10]{0})", 34),
     ("f32[]", 4), ("token[]", 0), ("((f32[2]{0}, f32[3]{0}), bf16[4]{0})", 28)],
)  # fmt: skip
def test_shape_bytes(shape: str, expected: int) -> None:
    assert hlo_kernels.shape_bytes(shape) == expected


def test_parse_hlo_reads_operands_tuple_elements_and_groups() -> None:
    table = hlo_kernels.parse_hlo(GPU_HLO)
    fusion = table["loop_add_fusion.7"]
    assert fusion.operands == (("custom-call.2", 0), ("b.4", None))
    assert fusion.op_name == "jit(step)/block_0/add" and fusion.group == "loop_add_fusion"
    assert table["loop_add_fusion.8"].operands == (("loop_add_fusion.7", None), ("b.4", None))
    assert table["custom-call.2"].group == "custom-call.2"  # no deduplicated_name: its own
    # element 0 of the cuBLAS result (4*16 bf16), not its 1024-byte workspace, + the f32 bias
    assert hlo_kernels.operand_bytes(fusion, table) == 4 * 16 * 2 + 16 * 4
    assert hlo_kernels.instruction_of("loop_add_fusion_7", table) is fusion
    assert hlo_kernels.instruction_of("custom-call.2", table) is table["custom-call.2"]
    assert hlo_kernels.instruction_of("nvjet_sm90_tst_128x128", table) is None
    assert table["dot.1"].computation == "gemm_fusion_dot.5_computation"
    assert table["custom-call.2"].computation == "main.1"


def test_dot_flops_of_a_triton_gemm_fusion_are_its_dots() -> None:
    table = hlo_kernels.parse_hlo(GPU_HLO)
    # batched (2) dot of (4, 6) by (6, 3): 2 * (2*4*3) * 6
    assert hlo_kernels.dot_flops(table["gemm_fusion_dot.5"], table) == 2 * 24 * 6
    assert hlo_kernels.dot_flops(table["custom-call.2"], table) == 2 * 4 * 16 * 8
    assert hlo_kernels.dot_flops(table["loop_add_fusion.7"], table) is None  # no dot inside


def test_annotate_bytes_bandwidth_and_library_kernels() -> None:
    kernels = [
        {"name": "nvjet_sm90_tst_128x128_64x6", "ms": 1.0, "calls": 3.0},
        {"name": "loop_add_fusion_7", "ms": 0.001, "calls": 2.0},
    ]
    out = hlo_kernels.annotate(kernels, hlo_kernels.parse_hlo(GPU_HLO), hbm_bytes_per_s=3.2e9)
    assert "hlo" not in out[0] and out[0]["ms"] == 1.0
    info = out[1]["hlo"]
    assert info["instructions"] == 2 and info["op_name"] == "jit(step)/block_0/add"
    assert (info["read_bytes"], info["written_bytes"]) == (192, 128)
    assert info["bytes_per_s"] == pytest.approx(320 * 2 / 1e-6)
    assert info["hbm_fraction"] == pytest.approx(0.2)
    line = list(hlo_kernels.render(out))[1]
    assert "loop_add_fusion_7" in line and "( 20%)" in line and line.endswith("block_0/add")


def test_parse_hlo_of_a_cpu_compile_resolves_operand_bytes_and_dot_flops() -> None:
    import jax
    import jax.numpy as jnp

    cpu = jax.local_devices(backend="cpu")[0]  # a GPU compile may call cuBLAS: no dot opcode
    x, w = jax.device_put((jnp.ones((64, 32), jnp.float32), jnp.ones((32, 48), jnp.float32)), cpu)
    compiled = jax.jit(lambda x, w: jnp.tanh(x @ w)).lower(x, w).compile()
    table = hlo_kernels.parse_hlo(compiled.as_text())
    # the instruction computing x @ w reads both inputs (8192 + 6144 bytes), writes 64*48 f32
    assert any(
        hlo_kernels.operand_bytes(i, table) == 64 * 32 * 4 + 32 * 48 * 4
        and hlo_kernels.shape_bytes(i.shape) == 64 * 48 * 4
        for i in table.values()
    )
    flops = {i.name: hlo_kernels.dot_flops(i, table) for i in table.values()}
    with_flops = {name for name, f in flops.items() if f is not None}
    dots = {i.name for i in table.values() if i.opcode == "dot"}
    assert len(dots) == 1 and flops[dots.pop()] == 2 * 64 * 48 * 32
    # besides the dot, only a fusion calling the dot's computation (XLA's CPU backend fuses it)
    for name in with_flops:
        assert flops[name] == 2 * 64 * 48 * 32
        assert table[name].opcode in ("dot", "fusion")


def test_hlo_kernels_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import gzip

    prof = tmp_path / "case.json"
    prof.write_text(json.dumps({"kernels": [{"name": "loop_add_fusion_7", "ms": 0.001,
                                             "calls": 2.0, "category": "fusion"}]}))  # fmt: skip
    hlo = tmp_path / "case.hlo.txt.gz"
    with gzip.open(hlo, "wt") as f:
        f.write(GPU_HLO)
    assert hlo_kernels.main([str(prof), str(hlo), "--device", "NVIDIA H200"]) == 0
    printed = capsys.readouterr().out
    assert "loop_add_fusion_7" in printed and "GB/s" in printed
    assert "jit(step)/block_0/add" in printed


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("NVIDIA H200", 4.8e12),
        ("NVIDIA H100 80GB HBM3", 3.35e12),
        ("NVIDIA H100 PCIe", 2.0e12),
        ("NVIDIA H100 NVL", 3.9e12),
        ("cpu", None),
        ("NVIDIA A100-SXM4-80GB", 2.039e12),
        ("NVIDIA A100-SXM4-40GB", 1.555e12),
        ("TPU v5 lite", 0.819e12),
        ("TPU v5", 2.765e12),
        ("tpu: TPU v6 lite x4", 1.64e12),
    ],
)
def test_peak_bandwidth(name: str, expected: float | None) -> None:
    assert peak_bandwidth(name) == expected


def _op_event(name: str, op: str | None, dur: float, pid: int = 7) -> dict:
    args = {} if op is None else {"hlo_op": op, "hlo_module": "jit_step"}
    return {**_kernel(pid, name, dur), "args": args}


def test_device_op_times_and_summary_per_instruction() -> None:
    events = [
        _meta(1, "/host:CPU"), _meta(7, "/device:GPU:0"),
        _op_event("PjitFunction(step)", "custom-call.2", 900.0, pid=1),  # host: left out
        # two executions of a split-K GEMM: two kernels each
        _op_event("nvjet_gemm", "custom-call.2", 30.0),
        _op_event("splitKreduce", "custom-call.2", 2.0),
        _op_event("nvjet_gemm", "custom-call.2", 30.0),
        _op_event("splitKreduce", "custom-call.2", 2.0),
        # one execution of a cuDNN attention backward: one main kernel, three memsets
        *[_op_event("Memset", "fmha-bwd.3", 1.0) for _ in range(3)],
        _op_event("flash_bprop", "fmha-bwd.3", 40.0),
        _op_event("loop_add_fusion_7", "loop_add_fusion.7", 5.0),
        _op_event("memset", None, 1.0),  # no instruction named: left out
    ]  # fmt: skip
    times = profile.device_op_times(events)
    assert set(times) == {"custom-call.2", "fmha-bwd.3", "loop_add_fusion.7"}
    assert times["custom-call.2"]["us"] == 64.0
    rows = profile.summarize_ops(times, steps=2)
    assert [r["hlo_op"] for r in rows] == ["custom-call.2", "fmha-bwd.3", "loop_add_fusion.7"]
    assert rows[1]["calls"] == 0.5  # 1 execution in 2 steps, not the 3 memsets
    assert rows[0] == {"hlo_op": "custom-call.2", "ms": 0.032, "calls": 1.0,
                       "kernels": ["nvjet_gemm", "splitKreduce"]}  # fmt: skip
    assert profile.summarize_ops(times, steps=2, top=1) == rows[:1]
    with pytest.raises(ValueError, match="steps"):
        profile.summarize_ops(times, steps=0)


def test_annotate_ops_gives_a_cublas_gemm_its_bytes_and_flops() -> None:
    ops = [
        {"hlo_op": "custom-call.2", "ms": 0.001, "calls": 2.0, "kernels": ["nvjet_gemm"]},
        {"hlo_op": "not-in-this-module", "ms": 0.5, "calls": 1.0, "kernels": ["k"]},
    ]
    out = hlo_kernels.annotate_ops(ops, hlo_kernels.parse_hlo(GPU_HLO), hbm_bytes_per_s=1e12)
    info = out[0]["hlo"]
    assert info["flops"] == 2 * 4 * 16 * 8  # (4, 8) @ (8, 16)
    assert info["flops_per_s"] == pytest.approx(1024 * 2 / 1e-6)
    # reads x (4x8) and w (8x16) in bf16; writes the (4, 16) output, not the s8 workspace
    assert (info["read_bytes"], info["written_bytes"]) == (64 + 256, 128)
    assert "hlo" not in out[1]
    assert "TFLOP/s" in list(hlo_kernels.render(out))[0]


def test_kernels_of_a_command_buffer_are_not_given_to_an_instruction() -> None:
    events = [
        _meta(7, "/device:GPU:0"),
        _op_event("nvjet_gemm", "command_buffer_1", 30.0),
        _op_event("loop_add_fusion_7", "command_buffer_1", 5.0),
        _op_event("loop_add_fusion_9", "loop_add_fusion.9", 4.0),
    ]
    assert set(profile.device_op_times(events)) == {"loop_add_fusion.9"}
    assert profile.command_buffer_ms(events, steps=5) == pytest.approx(35.0 / 5 / 1e3)


def test_render_points_to_no_command_buffers_when_kernels_ran_in_graphs() -> None:
    result = {
        "case": "lora-r8", "batch": 2, "device_ms_per_step": 1.0, "num_kernels": 1,
        "attention": "XLA", "categories_ms": {"gemm": 1.0}, "per_step": {"span_ms": 1.0},
        "kernels": [], "ops": [], "ops_in_command_buffers_ms": 0.75,
    }  # fmt: skip
    assert "0.75 ms per step ran in CUDA graphs" in profile.render(result)
    result["ops_in_command_buffers_ms"] = 0.0
    assert "CUDA graphs" not in profile.render(result)


def test_no_command_buffers_flag_appends_to_xla_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    profile.disable_command_buffers()
    assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_gpu_enable_command_buffer="
