"""Benchmark rows: one measured configuration each, JSON round trip and the printed table.

A row's throughput is ``items_per_s = batch / step_s`` (images, or GLoRA candidates for the
search rows), with ``step_s`` the median of the timed repetitions. ``mfu = flops / step_s /
peak_flops`` where ``flops`` counts one step (``flops_source`` says how it was counted).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class Row:
    """One measurement. ``name`` is "<framework>/<kind>/<variant>", e.g. "jax/train/lora-r8".

    step_s: median seconds per call; spread_s: (p10, p90) of the same samples (None: one run).
    peak_mem_bytes / memory_source: device memory of the step and how it was read.
    flops / flops_source: FLOPs of one call and how they were counted; mfu: achieved / peak.
    compile_s: seconds XLA took to compile the timed function, once (not in step_s).
    note: why a row is far from the bound, or what stands in for what.
    """

    name: str
    batch: int
    step_s: float
    spread_s: tuple[float, float] | None = None
    unit: str = "img"
    peak_mem_bytes: int | None = None
    memory_source: str = ""
    flops: float | None = None
    flops_source: str = ""
    mfu: float | None = None
    compile_s: float | None = None
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.name}@{self.batch}"

    @property
    def items_per_s(self) -> float:
        return self.batch / self.step_s

    @property
    def rate(self) -> str:
        """``items_per_s`` as printed: "3872.2 img/s", "0.00373 task/s" (3 digits below 10)."""
        x = self.items_per_s
        return f"{x:.1f} {self.unit}/s" if x >= 10 else f"{x:.3g} {self.unit}/s"


def key_filter(only: str | None) -> Callable[[str], bool]:
    """Whether a row key ``name@batch`` is selected by ``only``, a regex that must ``re.search``
    it (None: every key); a bad regex is a ValueError naming it (the ``--only`` of every bench
    command)."""
    if only is None:
        return lambda key: True
    try:
        pattern = re.compile(only)
    except re.error as e:
        raise ValueError(f"invalid --only regex {only!r}: {e}") from e
    return lambda key: pattern.search(key) is not None


def row_to_json(row: Row) -> dict[str, Any]:
    return {**dataclasses.asdict(row), "items_per_s": row.items_per_s}


def row_from_json(data: dict[str, Any]) -> Row:
    fields = {f.name for f in dataclasses.fields(Row)}
    values = {k: v for k, v in data.items() if k in fields}
    if values.get("spread_s") is not None:
        values["spread_s"] = tuple(values["spread_s"])
    return Row(**values)


def save_rows(rows: Iterable[Row], path: Path, **extra: Any) -> None:
    """Write ``{"rows": [...], **extra}`` as indented JSON, atomically: the text goes to a
    temporary file beside ``path`` that then replaces it, so that a reader (``bench.report`` on
    a run in progress) or a kill mid-write never finds half a file (the suites rewrite theirs
    after every row). Not ``peft_core.atomic_files``: its package imports JAX, which the torch
    peers' process does not."""
    payload = {"rows": [row_to_json(r) for r in rows], **extra}
    text = json.dumps(payload, indent=2, default=str)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    except OSError as e:  # named after ``path``, as a plain write would be (no such folder, ...)
        raise type(e)(e.errno, e.strerror, str(path)) from None
    finally:
        temporary.unlink(missing_ok=True)


def read_json(path: Path, what: str) -> Any:
    """The JSON value in ``path``; a ValueError naming the file and ``what`` to give instead
    when it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (give {what})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not JSON ({e}): give {what}") from None


def read_records(path: Path, key: str, fields: Sequence[str], what: str) -> list[dict[str, Any]]:
    """The list under ``key`` of the JSON object in ``path``, objects that each have ``fields``;
    a ValueError naming the file, what it lacks and ``what`` to give instead otherwise."""
    payload = read_json(path, what)
    records = payload.get(key) if isinstance(payload, dict) else None
    if not isinstance(records, list):
        raise ValueError(f"{path} has no top-level '{key}' list: give {what}")
    for i, record in enumerate(records):
        missing = [f for f in fields if not isinstance(record, dict) or f not in record]
        if missing:
            raise ValueError(f"{path}: {key}[{i}] has no {', '.join(missing)}: give {what}")
    return records


def devices_of(extra: dict[str, Any]) -> list[str]:
    """The devices a rows file records (its other top-level entries ``extra``): its "device"
    and, for a merge, every one of its "devices"."""
    recorded = [extra["device"]] if "device" in extra else []
    return recorded + [d for d in extra.get("devices") or [] if isinstance(d, str)]


def attentions_of(extra: dict[str, Any]) -> list[str]:
    """The ViT attention settings a rows file records (its other top-level entries ``extra``): a
    merge's "attentions", else its own "attention" (none: no ViT row was measured)."""
    found = extra.get("attentions")
    if not isinstance(found, list):
        found = [extra.get("attention")]
    return [a for a in found if isinstance(a, str)]


def attention_entries(settings: Iterable[str]) -> dict[str, Any]:
    """The entries of rows measured under ``settings`` (each file's, ``attentions_of``):
    "attentions" the distinct ones, "attention" the one, or "mixed" where they differ (the
    rows' files do not say which row is whose); none without a setting."""
    distinct = list(dict.fromkeys(settings))
    if not distinct:
        return {}
    return {"attention": distinct[0] if len(distinct) == 1 else "mixed", "attentions": distinct}


def load_rows(path: Path) -> tuple[list[Row], dict[str, Any]]:
    """(rows, the other top-level entries) of a file written by ``save_rows``; ValueError
    naming the file when it is missing, not JSON, or holds no bench rows."""
    what = "the --json output of bench.run, bench.jax_suite or bench.torch_peers"
    payload = read_json(path, what)
    if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list):
        raise ValueError(f"{path} holds no bench rows (no top-level 'rows' list): give {what}")
    rows = []
    for i, data in enumerate(payload.pop("rows")):
        try:
            rows.append(row_from_json(data))
        except (TypeError, AttributeError) as e:
            raise ValueError(f"{path}: rows[{i}] is not a bench row ({e})") from None
    return rows, payload


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table: name, batch, step ms, items/s, peak GiB, GFLOP/step, MFU, compile s,
    note."""
    header = (
        "| row | batch | step ms (p10-p90) | items/s | peak GiB | GFLOP/step | MFU | compile s "
        "| note |\n|---|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    lines = [header]
    for r in rows:
        spread = "1 run" if r.spread_s is None else "-".join(f"{t * 1e3:.2f}" for t in r.spread_s)
        mem = "-" if r.peak_mem_bytes is None else f"{r.peak_mem_bytes / 2**30:.2f}"
        gflop = "-" if r.flops is None else f"{r.flops / 1e9:.1f}"
        mfu = "-" if r.mfu is None else f"{100 * r.mfu:.1f}%"
        compile_s = "-" if r.compile_s is None else f"{r.compile_s:.1f}"
        lines.append(
            f"| {r.name} | {r.batch} | {r.step_s * 1e3:.2f} ({spread}) | "
            f"{r.rate} | {mem} | {gflop} | {mfu} | {compile_s} | {r.note} |"
        )
    return "\n".join(lines)
