"""Data-parallel scaling: a training row on 1, 2, 4, ... devices at a fixed per-device batch.

Row ``jax/scale/<case>/<n>dev`` at the global batch ``n x per-device batch`` runs the trainer's
step with the batch split over a "data" mesh of the first ``n`` devices (params replicated,
gradients all-reduced by XLA). Weak scaling: the efficiency at ``n`` devices is

    efficiency(n) = img/s(n) / (n x img/s(1))

(1.0: the all-reduce and the replication cost nothing). A row's FLOPs are what its n devices
execute: n x the one-device step's FLOPs at the per-device batch (the weight side and the
optimizer are replicated, so every device computes them); its MFU is against n x the peak, i.e.
the per-device MFU. In a multi-process run only the mesh over every device is measured (a
sub-mesh would leave processes without devices), so there is no efficiency to compute there.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

from bench.peaks import mfu
from bench.results import Row

PREFIX = "jax/scale"
_NAME = re.compile(rf"^{PREFIX}/(?P<case>.+)/(?P<devices>\d+)dev$")


def device_counts(total: int, processes: int = 1) -> list[int]:
    """1, 2, 4, ... below ``total``, then ``total``; only ``total`` with several processes."""
    if total < 1:
        raise ValueError(f"total devices must be >= 1, got {total}")
    if processes > 1:
        return [total]
    counts, n = [], 1
    while n < total:
        counts.append(n)
        n *= 2
    return [*counts, total]


def row_name(case: str, devices: int) -> str:
    return f"{PREFIX}/{case}/{devices}dev"


def parse_name(name: str) -> tuple[str, int] | None:
    """(case, devices) of a scaling row's name; None for any other row."""
    match = _NAME.match(name)
    return (match["case"], int(match["devices"])) if match else None


@dataclasses.dataclass(frozen=True)
class Efficiency:
    case: str
    devices: int
    per_device_batch: int
    items_per_s: float
    one_device_items_per_s: float

    @property
    def value(self) -> float:
        return self.items_per_s / (self.devices * self.one_device_items_per_s)

    def line(self) -> str:
        return (
            f"{self.case} on {self.devices} devices, {self.per_device_batch} images each: "
            f"{self.items_per_s:.1f} img/s = "
            f"{self.value:.1%} of {self.devices} x {self.one_device_items_per_s:.1f}"
        )


def efficiencies(rows: Sequence[Row]) -> list[Efficiency]:
    """Every scaling row with more than one device whose case has a one-device row at its
    per-device batch (weak scaling: runs at several per-device batches may be merged)."""
    parsed = [(parse_name(r.name), r) for r in rows]
    one = {(p[0], r.batch): r.items_per_s for p, r in parsed if p is not None and p[1] == 1}
    found = []
    for p, r in parsed:
        if p is None or p[1] == 1 or r.batch % p[1]:
            continue
        case, devices = p
        per_device = r.batch // devices
        if (case, per_device) in one:
            found.append(
                Efficiency(case, devices, per_device, r.items_per_s, one[case, per_device])
            )
    return found


def with_step_flops(row: Row, one_device_flops: float | None, peak: float | None) -> Row:
    """A scaling row with FLOPs n x ``one_device_flops`` (the one-device step at the per-device
    batch) and MFU against n x ``peak`` (see the module docstring); no FLOPs and no MFU when
    that count is None."""
    parsed = parse_name(row.name)
    if parsed is None:
        raise ValueError(f"{row.name!r} is not a scaling row ({PREFIX}/<case>/<n>dev)")
    if one_device_flops is None:
        return dataclasses.replace(row, flops=None, flops_source="", mfu=None)
    devices = parsed[1]
    flops = devices * one_device_flops
    total_peak = devices * peak if peak else None
    return dataclasses.replace(row, flops=flops, mfu=mfu(flops, row.step_s, total_peak))


def one_device_count(row: Row, counts: Mapping[str, float], train_prefix: str) -> float | None:
    """The count (``bench.count_flops``) of the one-device step ``<train_prefix>/<case>`` at a
    scaling row's per-device batch; None for other rows or when it is not counted."""
    parsed = parse_name(row.name)
    if parsed is None or row.batch % parsed[1]:
        return None
    case, devices = parsed
    return counts.get(f"{train_prefix}/{case}@{row.batch // devices}")
