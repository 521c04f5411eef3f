"""The report: table + target checks, and merging runs made in several device calls.

    python -m bench.report run1.json run2.jax.json ... [--flops flops.json] [--out all.json]

Rows of later files replace rows of earlier ones with the same key (name@batch). ``--flops`` (from
``bench.count_flops``) sets the FLOPs of the rows it names and recomputes their MFU with the dense
bf16 peak of the device named in the file each row is taken from (none named, or a merge of
several: no MFU); a file that names none of the rows is an error (counted at another ``--size``,
say). Files measured with other ViT attention settings (a process whose cuDNN check failed falls
back to XLA) merge to "attention": "mixed", every setting in "attentions", and the report says so.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.peaks import mfu, peak_flops
from bench.results import (
    Row,
    attention_entries,
    attentions_of,
    devices_of,
    format_table,
    load_rows,
    read_json,
    save_rows,
)
from bench.scaling import efficiencies, one_device_count, with_step_flops
from bench.targets import evaluate_targets, judged
from experiments.command_line import exit_on_error


def render(
    rows: Sequence[Row],
    *,
    skipped: Sequence[str],
    failed: Sequence[dict[str, Any]],
    size: str | None = None,
    devices: Sequence[str] = (),
    unrecorded: Sequence[str] = (),
    attentions: Sequence[str] = (),
) -> str:
    """The devices, the table, the target checks, the scaling efficiencies, then skipped and
    failed rows, as printed text. ``size``: the rows' bench size (None: not recorded);
    ``devices``: the distinct devices the files recorded, ``unrecorded``: files that name none;
    ``attentions``: the distinct ViT attention settings they recorded (several: said so).
    The targets are judged only at "full" on one H100 (``bench.targets.judged``: other ratios
    are printed without a verdict)."""
    checks, unchecked = evaluate_targets(rows)
    scaling = efficiencies(rows)
    verdicts = judged(size, devices)
    lines = [
        f"Device: {devices[0]}" if len(devices) == 1 else "Devices: " + "; ".join(devices),
        *(
            ["Rows of several devices: their ratios are not one-machine ratios."]
            if len(devices) > 1
            else []
        ),
        *([f"No device recorded in: {', '.join(unrecorded)}"] if unrecorded else []),
        *(
            ["Rows of several attention settings: " + "; ".join(attentions)]
            if len(attentions) > 1
            else []
        ),
        "",
        format_table(rows),
        "",
        "Targets (issue #5; stated for --size full on one H100, no verdict elsewhere):",
        *(c.line(judged=verdicts) for c in checks),
        *(f"n/a  {m}" for m in unchecked),
        *(["", "Data-parallel scaling (per-device batch fixed):"] if scaling else []),
        *(e.line() for e in scaling),
        *(f"skipped: {s}" for s in skipped),
        *(f"FAILED: {f['name']}: {f['error']}" for f in failed),
    ]
    return "\n".join(lines)


def merge_runs(paths: Sequence[Path]) -> tuple[list[Row], dict[str, Any]]:
    """Rows of all files (later files win per key) and their merged extra entries: "device" the
    first file's, "devices" every distinct one, "unrecorded" the files that name none;
    "attention" the ViT attention setting of every file that records one, "mixed" where they
    differ, "attentions" every distinct one (``attention_entries``). A file that is itself a
    merge (``--out`` of this command or of ``bench.run``) brings its own "devices",
    "unrecorded" and "attentions" along, not only its first device."""
    by_key: dict[str, Row] = {}
    info: dict[str, Any] = {"skipped": [], "failed": [], "sources": [str(p) for p in paths]}
    info |= {"devices": [], "unrecorded": []}
    attentions: list[str] = []
    for path in paths:
        rows, extra = load_rows(path)
        by_key.update({r.key: r for r in rows})
        attentions += attentions_of(extra)
        recorded = devices_of(extra)
        inner = [u for u in extra.get("unrecorded") or [] if isinstance(u, str)]
        if not recorded and not inner:
            info["unrecorded"].append(str(path))
        info["devices"] += [d for d in dict.fromkeys(recorded) if d not in info["devices"]]
        info["unrecorded"] += [u for u in inner if u not in info["unrecorded"]]
        for key, value in extra.items():
            if key in ("skipped", "failed", "timing"):
                value = [value] if isinstance(value, str) else value
                info.setdefault(key, [])
                info[key] += [v for v in value if v not in info[key]]
            elif key == "versions":
                info["versions"] = {**info.get("versions", {}), **value}
            elif key == "device":
                info.setdefault(key, value)
            elif key == "size":  # files of two sizes: no verdict
                info["size"] = value if info.get("size", value) == value else "mixed"
    return list(by_key.values()), info | attention_entries(attentions)


def row_peaks(paths: Sequence[Path]) -> dict[str, float | None]:
    """Each row key's dense bf16 peak: that of the device named by the file its row is taken
    from (the last that holds the key, as ``merge_runs`` takes it); None where that file names
    none, or is a merge of devices of several peaks or of files that name none."""
    peaks: dict[str, float | None] = {}
    for path in paths:
        rows, extra = load_rows(path)
        found = {peak_flops(d) for d in devices_of(extra)}
        peak = found.pop() if len(found) == 1 and not extra.get("unrecorded") else None
        peaks |= {r.key: peak for r in rows}
    return peaks


def with_flops(
    rows: Sequence[Row], counts: dict[str, float], *, source: str, peak: float | None
) -> list[Row]:
    """Rows with ``counts[row.key]`` as their FLOPs (and MFU) where the key is counted; a
    scaling row gets n x the count of its one-device step (``bench.scaling``)."""
    out = []
    for r in rows:
        one_device = one_device_count(r, counts, "jax/train")
        if one_device is not None:  # a scaling row (None for every other row)
            r = with_step_flops(dataclasses.replace(r, flops_source=source), one_device, peak)
        elif r.key in counts:
            flops = counts[r.key]
            r = dataclasses.replace(
                r, flops=flops, flops_source=source, mfu=mfu(flops, r.step_s, peak)
            )
        out.append(r)
    return out


def read_counts(path: Path) -> tuple[dict[str, float], str]:
    """(FLOPs per row key, how they were counted) of a ``bench.count_flops`` JSON; a ValueError
    naming the file and what it lacks."""
    what = "the --out of bench.count_flops"
    payload = read_json(path, what)
    counts = payload.get("flops") if isinstance(payload, dict) else None
    if not isinstance(counts, dict) or not isinstance(payload.get("source"), str):
        raise ValueError(f"{path} has no top-level 'flops' object and 'source' text: give {what}")
    bad = [key for key, flops in counts.items() if not isinstance(flops, int | float)]
    if bad:
        raise ValueError(f"{path}: the FLOPs of {bad[:5]} are not numbers: give {what}")
    return counts, payload["source"]


def check_counted(rows: Sequence[Row], counts: dict[str, float], path: Path) -> None:
    """A ValueError when no count of ``counts`` (read from ``path``) is of one of ``rows``
    (``with_flops``: by key, or a scaling row's one-device step), naming some of both."""
    if any(r.key in counts or one_device_count(r, counts, "jax/train") is not None for r in rows):
        return
    raise ValueError(
        f"{path} counts none of the rows: it counts {_some(counts)}; the rows are "
        f"{_some(r.key for r in rows)} (count at the runs' --size, or --keys of their rows)"
    )


def _some(keys: Iterable[str], shown: int = 5) -> str:
    """The first ``shown`` of ``keys`` (sorted) and how many there are."""
    ordered = sorted(keys)
    more = f" ... ({len(ordered)} in all)" if len(ordered) > shown else ""
    return ", ".join(ordered[:shown]) + more


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="JSON files of bench.run / its parts")
    p.add_argument("--flops", type=Path, default=None, help="JSON of bench.count_flops")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        rows, info = merge_runs(args.runs)
        if args.flops is not None:
            counts, source = read_counts(args.flops)
            check_counted(rows, counts, args.flops)
            peaks = row_peaks(args.runs)
            rows = [with_flops([r], counts, source=source, peak=peaks[r.key])[0] for r in rows]
    except ValueError as e:
        p.error(str(e))
    size = info.get("size")
    print(render(rows, skipped=info["skipped"], failed=info["failed"], size=size,
                 devices=info["devices"], unrecorded=info["unrecorded"],
                 attentions=info.get("attentions", ())))  # fmt: skip
    if args.out is not None:
        checks, unchecked = evaluate_targets(rows)
        lines = [c.line(judged=judged(size, info["devices"])) for c in checks]
        save_rows(rows, args.out, **info, checks=lines, unchecked=unchecked)
    return 0


if __name__ == "__main__":
    exit_on_error(main)
