"""Device peaks: dense bf16 FLOP/s for MFU (no sparsity), HBM bytes/s for bandwidth.

Datasheet numbers per JAX device (a GPU, or a TPU chip: v4 and later show one device per chip).
H100 SXM5 and H200 share the GH100 chip: 989.4 TFLOP/s dense bf16 at boost clock (the H100 PCIe
card 756 TFLOP/s and 2.0 TB/s, the H100 NVL 835 and 3.9, the H200 NVL 835 and 4.8, at lower
clocks); measured on these machines (KINDS.md), an 8192^3 bf16 matmul runs at about 790-800
TFLOP/s, so an MFU of ~80% is the practical ceiling there. The GH200's GPU computes as the H100
SXM5 does, its HBM is 96 GB HBM3 (4.0 TB/s) or 144 GB HBM3e (4.9 TB/s): a GH200 whose name says
neither ("NVIDIA GH200 480GB") has no bandwidth peak. A100: 312 TFLOP/s. Cloud TPU (device kinds
as JAX names them): v4 275 TFLOP/s and 1.2 TB/s, v5e ("TPU v5 lite") 197 and 0.819, v5p ("TPU
v5") 459 and 2.765, v6e ("TPU v6 lite") 918 and 1.64. Other devices (the CPU of the tests, a GPU
not listed) have no peak: MFU is None, printed "-".

A name matches a marker when it holds every word of it (words: runs of letters and digits, any
case), so "GH200" is no "H200" and "HBM3e" no "HBM3"; the marker of the most words wins, so
"TPU v5 lite x8" is a v5e, not a v5p, and a name that two markers of as many words match with
different values has no peak.
"""

from __future__ import annotations

import re

#: (marker in the device name, dense bf16 FLOP/s)
BF16_PEAKS: tuple[tuple[str, float], ...] = (
    ("H100", 989.4e12), ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H200", 989.4e12),
    ("H200 NVL", 835e12), ("GH200", 989.4e12),
    ("A100", 312e12),
    ("TPU v4", 275e12), ("TPU v5 lite", 197e12), ("TPU v5e", 197e12), ("TPU v5", 459e12),
    ("TPU v5p", 459e12), ("TPU v6 lite", 918e12), ("TPU v6e", 918e12),
)  # fmt: skip

#: (marker in the device name, HBM bandwidth in bytes/s)
HBM_PEAKS: tuple[tuple[str, float], ...] = (
    ("H100", 3.35e12), ("H100 PCIe", 2.0e12), ("H100 NVL", 3.9e12), ("H200", 4.8e12),
    ("H200 NVL", 4.8e12), ("GH200 HBM3", 4.0e12), ("GH200 HBM3e", 4.9e12),
    ("A100-SXM4-80GB", 2.039e12), ("A100 80GB PCIe", 1.935e12), ("A100-SXM4-40GB", 1.555e12),
    ("A100-PCIE-40GB", 1.555e12),
    ("TPU v4", 1.2e12), ("TPU v5 lite", 0.819e12), ("TPU v5e", 0.819e12), ("TPU v5", 2.765e12),
    ("TPU v5p", 2.765e12), ("TPU v6 lite", 1.64e12), ("TPU v6e", 1.64e12),
)  # fmt: skip


def _words(text: str) -> set[str]:
    return set(re.findall(r"[A-Z0-9]+", text.upper()))


def _best(table: tuple[tuple[str, float], ...], device_name: str) -> list[tuple[str, float]]:
    """The (marker, value) entries of most words that ``device_name`` holds every word of."""
    name = _words(device_name)
    found = [(len(words), m, v) for m, v in table if (words := _words(m)) <= name]
    most = max((n for n, _, _ in found), default=0)
    return [(m, v) for n, m, v in found if n == most]


def _lookup(table: tuple[tuple[str, float], ...], device_name: str) -> float | None:
    """The value of the marker of most words that ``device_name`` holds every word of; None when
    there is none, or two such markers disagree."""
    values = {v for _, v in _best(table, device_name)}
    return values.pop() if len(values) == 1 else None


def card(device_name: str) -> str | None:
    """The ``BF16_PEAKS`` marker that names ``device_name``'s card ("H100" for an H100 SXM5,
    "H100 PCIe", "GH200", ...); None when none or several of as many words match."""
    best = _best(BF16_PEAKS, device_name)
    return best[0][0] if len(best) == 1 else None


def peak_flops(device_name: str) -> float | None:
    """The dense bf16 peak of ``device_name`` (e.g. "NVIDIA H100 80GB HBM3", "TPU v5 lite")."""
    return _lookup(BF16_PEAKS, device_name)


def peak_bandwidth(device_name: str) -> float | None:
    """The HBM bandwidth of ``device_name`` (e.g. H200 4.8 TB/s), or None."""
    return _lookup(HBM_PEAKS, device_name)


def mfu(flops: float | None, step_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: ``flops / step_s / peak`` (None without FLOPs or a peak)."""
    if flops is None or peak is None or step_s <= 0:
        return None
    return flops / step_s / peak
