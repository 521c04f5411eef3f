"""bench.profile_diff: instruction keys, grouping and the difference of two profiled steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import profile_diff
from bench.hlo_kernels import parse_hlo

RUNS = Path(__file__).resolve().parents[1] / "bench" / "runs" / "2026-12-02-h200"

HLO = """\
HloModule jit_step

%gemv_computation (param_0: bf16[16,3168,3072]) -> f32[16,1,3072] {
  %param_0 = bf16[16,3168,3072]{2,1,0} parameter(0)
  ROOT %dot.1 = f32[16,1,3072]{2,1,0} dot(%param_0, %param_0), lhs_batch_dims={0}
}

ENTRY %main (p0: bf16[50688,3072]) -> f32[16,1,3072] {
  %p0 = bf16[50688,3072]{1,0} parameter(0)
  %bitcast.1 = bf16[16,3168,3072]{2,1,0} bitcast(%p0)
  %gemm_fusion_dot.7 = f32[16,1,3072]{2,1,0} fusion(%bitcast.1), calls=%gemv_computation
  ROOT %gemm_fusion_dot.8 = f32[16,1,3072]{2,1,0} fusion(%bitcast.1), calls=%gemv_computation
}
"""


def _op(hlo_op: str, ms: float, calls: float, op_name: str | None = None) -> dict:
    row: dict = {"hlo_op": hlo_op, "ms": ms, "calls": calls}
    if op_name is not None:
        row["hlo"] = {"op_name": op_name}
    return row


GRAD = "jit(s)/transpose(jvp(vmap(ViT)))/T/encoderblock_{}/Dense_0/dot_general"
OPS_A = [
    _op("gemm_fusion_dot.7", 0.15, 1),
    _op("gemm_fusion_dot.8", 0.14, 1),
    _op("custom-call.1", 1.0, 2, GRAD.format(0)),
    _op("custom-call.2", 1.5, 2, GRAD.format(1)),
]
OPS_B = [
    _op("custom-call.9", 2.0, 4, "jit(t)/transpose(jvp(ViT))/T/encoderblock_5/Dense_0/transpose"),
    _op("loop_add_fusion.3", 0.4, 1),
]


@pytest.mark.parametrize(
    ("op_name", "gemm", "key"),
    [
        ("jit(packed_step)/transpose(jvp(vmap(ViT)))/Transformer/encoderblock_10/MlpBlock_0/"
         "Dense_0/transpose", True,
         "transpose(jvp(ViT))/Transformer/encoderblock_N/MlpBlock_0/Dense_0/dot"),
        ("jit(packed_step)/transpose(jvp(vmap(ViT)))/Transformer/encoderblock_10/MlpBlock_0/"
         "Dense_0/transpose", False,
         "transpose(jvp(ViT))/Transformer/encoderblock_N/MlpBlock_0/Dense_0/transpose"),
        ("jit(packed_step)/transpose(jvp(vmap(vmap())))/mul", False, "transpose(jvp())/mul"),
        ("jit(packed_step)/jvp(ConvNeXt)/stage2_block0/dwconv/conv_general_dilated", False,
         "jvp(ConvNeXt)/stage2_blockN/dwconv/conv_general_dilated"),
    ],
)  # fmt: skip
def test_normalize(op_name: str, gemm: bool, key: str) -> None:
    assert profile_diff.normalize(op_name, gemm=gemm) == key


def test_diff_groups_by_key_and_ranks_by_difference() -> None:
    groups = profile_diff.diff(OPS_A, OPS_B, parse_hlo(HLO), {})
    assert [g.key for g in groups] == [
        "transpose(jvp(ViT))/T/encoderblock_N/Dense_0/dot",
        "[loop_add_fusion]",
        "[f32[16,1,3072] <- bf16[16,3168,3072]]",
    ]
    dense, add, gemv = groups
    assert dense.ms == pytest.approx((2.5, 2.0)) and dense.calls == (4, 4)
    assert dense.diff_ms == pytest.approx(0.5)
    assert add.ms == (0.0, 0.4) and add.calls == (0.0, 1.0)
    assert gemv.ms == pytest.approx((0.29, 0.0)) and gemv.calls == (2.0, 0.0)


def test_main_reads_the_hlo_next_to_each_profile(tmp_path: Path, capsys) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"ops": OPS_A}))
    (tmp_path / "a.hlo.txt").write_text(HLO)
    (tmp_path / "b.json").write_text(json.dumps({"ops": OPS_B}))
    out = tmp_path / "diff.json"
    code = profile_diff.main(
        [str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "A a: 2.79 ms per step; B b: 2.40; A - B +0.39"
    assert len(printed) == 2 + 3
    written = json.loads(out.read_text())
    assert [g["key"] for g in written["groups"]][2] == "[f32[16,1,3072] <- bf16[16,3168,3072]]"
    assert sum(g["diff_ms"] for g in written["groups"]) == pytest.approx(0.39)


def test_a_profile_without_instruction_times_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "cb.json"
    path.write_text(json.dumps({"ops": [], "kernels": []}))
    with pytest.raises(ValueError, match="--no-command-buffers"):
        profile_diff.load_ops(path)


def test_call96_bias_gradients_are_the_gemv_groups() -> None:
    """On call 96's profiles (H200) the keys from the HLO shapes gather GLoRA K=1's bias-gradient
    GEMVs: fc1's 11 and the 33 768-wide ones, which LoRA's weight-space step does not run."""
    prof = RUNS / "call96" / "prof"
    a, b = prof / "glora-supernet-k1.json", prof / "lora-r8-weight.json"
    groups = {
        g.key: g
        for g in profile_diff.diff(
            profile_diff.load_ops(a), profile_diff.load_ops(b),
            profile_diff.hlo_table(a), profile_diff.hlo_table(b),
        )
    }  # fmt: skip
    fc1 = groups["[f32[16,1,3072] <- bf16[16,3168,3072]]"]
    narrow = groups["[f32[64,1,768] <- bf16[64,792,768]]"]
    assert (fc1.calls, narrow.calls) == ((11, 0), (33, 0))
    assert fc1.ms[0] + narrow.ms[0] == pytest.approx(2.80, abs=0.005)
    total_a = sum(g.ms[0] for g in groups.values())
    assert total_a == pytest.approx(json.loads(a.read_text())["device_ms_per_step"])
