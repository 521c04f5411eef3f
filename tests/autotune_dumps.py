"""Small XLA autotuning dumps in protobuf text format, for the bench.autotune_log tests: one
depthwise cuDNN conv with candidates algorithm 5 and 22, one Triton GEMM with two tiles."""

from __future__ import annotations

CONV = (
    "%cudnn-conv.5 = (bf16[8,14,14,384]{3,2,1,0}, u8[0]{0}) custom-call(%a, %b), "
    "window={size=7x7 pad=3_3x3_3}, feature_group_count=384, "
    'custom_call_target="__cudnn$convForward", metadata={op_name="jit(step)/stage2/dwconv"}'
)
GEMM = "%gemm_fusion_dot.1 = bf16[64,32]{1,0} fusion(%x, %y), kind=kCustom"


def cudnn(algo: int, nanos: int, knob: str = "") -> str:
    knobs = f"tuning_knobs {{ key: 2 value: {knob} }}" if knob else ""
    return (
        "config_profiles { config { backend: CUDNN backend_config { algorithm { "
        f"algo_id: {algo} {knobs} workspace_size {{ }} }} }} }} run_time {{ nanos: {nanos} }} }}"
    )


def triton(block_m: int, nanos: int) -> str:
    return (
        "config_profiles { config { backend: TRITON backend_config { triton { "
        f"block_m: {block_m} num_warps: 4 }} }} }} run_time {{ nanos: {nanos} }} }}"
    )


def logs(conv_times: tuple[int, int]) -> str:
    """Two instructions: a conv with candidates algo 5 and algo 22, a GEMM with two tiles."""
    escaped = CONV.replace('"', '\\"')
    return (
        f'instruction_profiles {{ hlo_fingerprint: "f1" {cudnn(5, conv_times[0])} '
        f'{cudnn(22, conv_times[1], "5")} hlo_text: "{escaped}" }}\n'
        f'instruction_profiles {{ hlo_fingerprint: "f2" {triton(16, 3000)} {triton(64, 2000)} '
        f'hlo_text: "{GEMM}" }}\n'
    )


def results(conv_algo: int) -> str:
    return (
        'entries { key { target { hlo_fingerprint: "f1" } } value { optimal_config { '
        f"backend: CUDNN backend_config {{ algorithm {{ algo_id: {conv_algo} "
        + ("tuning_knobs { key: 2 value: 5 } " if conv_algo == 22 else "")
        + "workspace_size { } } } } } }\n"
        'entries { key { target { hlo_fingerprint: "f2" } } value { optimal_config { '
        "backend: TRITON backend_config { triton { block_m: 64 num_warps: 4 } } } } }\n"
    )
