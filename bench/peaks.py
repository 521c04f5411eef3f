"""Device peaks: dense bf16 tensor-core FLOP/s for MFU (no sparsity), HBM bytes/s for bandwidth.

H100 SXM5 and H200 share the GH100 chip: 989.4 TFLOP/s dense bf16 at boost clock. Measured on
these machines (KINDS.md): an 8192^3 bf16 matmul runs at about 790-800 TFLOP/s, so an MFU of
~80% is the practical ceiling. Other devices (the CPU of the tests) have no peak: MFU is None.
"""

from __future__ import annotations

#: (substring of the device name, dense bf16 FLOP/s)
BF16_PEAKS: tuple[tuple[str, float], ...] = (("H100", 989.4e12), ("H200", 989.4e12))

#: (substring of the device name, HBM bandwidth in bytes/s; datasheet numbers)
HBM_PEAKS: tuple[tuple[str, float], ...] = (("H100", 3.35e12), ("H200", 4.8e12))


def _lookup(table: tuple[tuple[str, float], ...], device_name: str) -> float | None:
    """The value of the first marker that occurs in ``device_name`` (upper-cased), or None."""
    return next((v for marker, v in table if marker in device_name.upper()), None)


def peak_flops(device_name: str) -> float | None:
    """The dense bf16 peak of ``device_name`` (e.g. "NVIDIA H100 80GB HBM3"), or None."""
    return _lookup(BF16_PEAKS, device_name)


def peak_bandwidth(device_name: str) -> float | None:
    """The HBM bandwidth of ``device_name`` (H100 SXM5 3.35 TB/s, H200 4.8 TB/s), or None."""
    return _lookup(HBM_PEAKS, device_name)


def mfu(flops: float | None, step_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: ``flops / step_s / peak`` (None without FLOPs or a peak)."""
    if flops is None or peak is None or step_s <= 0:
        return None
    return flops / step_s / peak
