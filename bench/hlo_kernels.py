"""Join a profile's kernels with XLA's optimised HLO: what each kernel computes, bytes it moves.

    python -m bench.hlo_kernels prof/lora-r8.json prof/lora-r8.hlo.txt.gz --top 30

A kernel XLA emits itself (``loop_*``/``input_*`` fusions, Triton ``gemm_fusion_*``, copies) is
named after one HLO instruction, with the last "." of the name written "_" (``loop_add_fusion.33``
-> ``loop_add_fusion_33``). XLA compiles instructions of equal computation once: each carries
``deduplicated_name``, shared by every instruction that launches the same kernel, so one kernel
name in the profile stands for its whole group (e.g. the 12 GELU backward passes of a ViT-B).

Per kernel this adds ``hlo``: the representative's ``op_name`` (the jaxpr path it came from), the
group size, bytes per launch (every operand read once + the result written once: a fusion that
reads part of an operand, or an operand twice, makes this an estimate) and the bandwidth that
implies, ``bytes x launches / time``, with its fraction of the device's HBM peak. Library kernels
(cuBLAS ``nvjet_*``, cuDNN) are not HLO instructions and get no ``hlo`` entry.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.results import read_records
from experiments.command_line import count_or_zero, exit_on_error

#: bytes per element of the HLO element types that occur in these programs
ELEMENT_BYTES = {
    "pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2,
    "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16,
}  # fmt: skip

_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+) = (.*)$")
_ARRAY = re.compile(r"^([a-z]+\d*)\[([\d,]*)\]")
_OPERAND = re.compile(r"%([\w.\-]+)(?:#(\d+))?")
_DEDUPLICATED = re.compile(r'deduplicated_name="([^"]+)"')
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_CONTRACTING_HLO = re.compile(r"lhs_contracting_dims=\{([\d,]*)\}")
_CONTRACTING_JSON = re.compile(r'"lhs_contracting_dimensions":\[([^\]]*)\]')
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%([\w.\-]+)\s*\(.*\{\s*$")
_CALLS = re.compile(r"calls=%([\w.\-]+)")


@dataclasses.dataclass(frozen=True)
class Instruction:
    """One HLO instruction: its result shape text, operands (name, tuple index or None), the
    jaxpr ``op_name``, the kernel group it belongs to (``deduplicated_name``, else its name) and
    the computation it is in (a fusion's instructions are in the computation it ``calls``)."""

    name: str
    shape: str
    operands: tuple[tuple[str, int | None], ...]
    op_name: str
    group: str
    opcode: str
    attributes: str  # everything after the operand list
    computation: str


def _split_top(text: str) -> list[str]:
    """Split at commas outside (), [] and {}."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def _closing(text: str, start: int) -> int:
    """Index of the bracket closing the one at ``text[start]``."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] in "([{":
            depth += 1
        elif text[i] in ")]}":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced brackets in {text[:80]!r}")


def tuple_elements(shape: str) -> list[str]:
    """The element shapes of a tuple shape ``(a, b, ...)``; ``[shape]`` for an array shape."""
    shape = shape.strip()
    if shape.startswith("("):
        return _split_top(shape[1 : _closing(shape, 0)])
    return [shape]


def _dims(shape: str) -> list[int]:
    """The dimensions of an array shape; [] for anything else."""
    match = _ARRAY.match(shape.strip())
    return [int(d) for d in match.group(2).split(",") if d] if match else []


def shape_bytes(shape: str) -> int:
    """Bytes of an array shape (``bf16[256,208,768]{2,1,0}``) or of every array of a tuple."""
    shape = shape.strip()
    if shape.startswith("("):
        return sum(shape_bytes(e) for e in tuple_elements(shape))
    match = _ARRAY.match(shape)
    if match is None or match.group(1) not in ELEMENT_BYTES:
        return 0  # token[] and other non-array shapes
    return ELEMENT_BYTES[match.group(1)] * math.prod(_dims(shape))


def parse_hlo(text: str) -> dict[str, Instruction]:
    """Every instruction of an HLO module's text (names are unique within a module)."""
    out, computation = {}, ""
    for line in text.splitlines():
        match = _INSTRUCTION.match(line)
        if match is None:
            header = _COMPUTATION.match(line)
            computation = header.group(1) if header else computation
            continue
        name, rest = match.groups()
        end = _closing(rest, 0) + 1 if rest.startswith("(") else rest.index(" ")
        shape, call = rest[:end], rest[end:]
        open_at = call.find("(")
        if open_at < 0:  # no operand list
            open_at = len(call)
        close_at = _closing(call, open_at) if open_at < len(call) else len(call)
        args = call[open_at + 1 : close_at]
        operands = tuple(
            (m.group(1), None if m.group(2) is None else int(m.group(2)))
            for m in _OPERAND.finditer(args)
        )
        op_name = _OP_NAME.search(rest)
        group = _DEDUPLICATED.search(rest)
        out[name] = Instruction(
            name, shape, operands, op_name.group(1) if op_name else "",
            group.group(1) if group else name, call[:open_at].strip(), call[close_at + 1 :],
            computation,
        )  # fmt: skip
    return out


def operand_shape(operand: tuple[str, int | None], table: Mapping[str, Instruction]) -> str:
    """The shape of an operand ``(name, tuple index or None)``; "" for a name not in ``table``."""
    name, index = operand
    shape = table[name].shape if name in table else ""
    return shape if index is None or not shape else tuple_elements(shape)[index]


def result_bytes(instruction: Instruction) -> int:
    """Bytes the instruction writes: its result, less the s8/u8 scratch buffer that cuBLAS and
    cuDNN custom-calls return last."""
    elements = tuple_elements(instruction.shape)
    scratch = len(elements) > 1 and elements[-1].startswith(("s8[", "u8["))
    if instruction.opcode == "custom-call" and scratch:
        elements = elements[:-1]
    return sum(shape_bytes(e) for e in elements)


def dots_by_computation(table: dict[str, Instruction]) -> dict[str, list[Instruction]]:
    """The ``dot`` instructions of ``table`` per computation."""
    out: dict[str, list[Instruction]] = {}
    for instruction in table.values():
        if instruction.opcode == "dot":
            out.setdefault(instruction.computation, []).append(instruction)
    return out


def dot_flops(
    instruction: Instruction,
    table: dict[str, Instruction],
    dots: dict[str, list[Instruction]] | None = None,
) -> int | None:
    """2 · output elements · contracted size of a ``dot`` or a cuBLAS custom-call; for a fusion
    (a Triton ``gemm_fusion``) the sum over the dots of the computation it calls; None where
    there is no dot. ``dots``: ``dots_by_computation(table)``, to reuse over many calls."""
    called = _CALLS.search(instruction.attributes)
    if instruction.opcode == "fusion" and called:
        fused = (dots_by_computation(table) if dots is None else dots).get(called.group(1), [])
        flops = [f for f in (dot_flops(i, table) for i in fused) if f is not None]
        return sum(flops) if flops else None
    if instruction.opcode == "dot":
        match = _CONTRACTING_HLO.search(instruction.attributes)
    elif instruction.opcode == "custom-call" and "cublas" in instruction.attributes:
        match = _CONTRACTING_JSON.search(instruction.attributes)
    else:
        return None
    if match is None or not instruction.operands:
        return None
    lhs = _dims(operand_shape(instruction.operands[0], table))
    contracted = math.prod(lhs[int(d.strip('" '))] for d in match.group(1).split(",") if d)
    return 2 * math.prod(_dims(tuple_elements(instruction.shape)[0])) * contracted


def operand_bytes(instruction: Instruction, table: dict[str, Instruction]) -> int:
    """Bytes of the operands of ``instruction`` (a tuple operand ``%x#i`` counts element i)."""
    return sum(shape_bytes(operand_shape(operand, table)) for operand in instruction.operands)


def instruction_of(kernel: str, table: dict[str, Instruction]) -> Instruction | None:
    """The instruction a kernel is named after: ``loop_add_fusion_33`` -> ``loop_add_fusion.33``."""
    if kernel in table:
        return table[kernel]
    dotted = re.sub(r"_(\d+)$", r".\1", kernel)
    return table.get(dotted)


def _info(
    instruction: Instruction, table: dict[str, Instruction], launches: float, ms: float,
    hbm_bytes_per_s: float | None, dots: dict[str, list[Instruction]],
) -> dict[str, Any]:  # fmt: skip
    """op_name, bytes read and written per launch, and with launches and ms per step the
    bandwidth (and HBM fraction) and, for a GEMM, FLOPs per launch and FLOP/s."""
    read, written = operand_bytes(instruction, table), result_bytes(instruction)
    info: dict[str, Any] = {
        "op_name": instruction.op_name, "read_bytes": read, "written_bytes": written,
    }  # fmt: skip
    flops = dot_flops(instruction, table, dots)
    if flops is not None:
        info["flops"] = flops
    if launches and ms:
        info["bytes_per_s"] = (read + written) * launches / (ms * 1e-3)
        if hbm_bytes_per_s:
            info["hbm_fraction"] = info["bytes_per_s"] / hbm_bytes_per_s
        if flops is not None:
            info["flops_per_s"] = flops * launches / (ms * 1e-3)
    return info


def annotate(
    kernels: Sequence[dict[str, Any]],
    table: dict[str, Instruction],
    hbm_bytes_per_s: float | None = None,
) -> list[dict[str, Any]]:
    """``kernels`` (``bench.profile``'s: name, ms and calls per step) with ``hlo`` added where the
    name is an instruction of ``table`` (``parse_hlo``; see the module docstring)."""
    group_sizes, dots = Counter(i.group for i in table.values()), dots_by_computation(table)
    out = []
    for kernel in kernels:
        instruction = instruction_of(kernel["name"], table)
        if instruction is None:
            out.append(dict(kernel))
            continue
        info = _info(
            instruction, table, kernel.get("calls", 0), kernel.get("ms", 0), hbm_bytes_per_s, dots
        )
        info["instructions"] = group_sizes[instruction.group]
        out.append({**kernel, "hlo": info})
    return out


def annotate_ops(
    ops: Sequence[dict[str, Any]],
    table: dict[str, Instruction],
    hbm_bytes_per_s: float | None = None,
) -> list[dict[str, Any]]:
    """Per-instruction rows (``bench.profile``'s ``ops``: hlo_op, ms and calls per step, the
    kernels it launched) with the instruction's ``hlo`` info from ``table`` (``parse_hlo``):
    this also covers the library kernels (a cuBLAS GEMM's custom-call: bytes, FLOPs, FLOP/s)."""
    dots = dots_by_computation(table)
    return [
        {**op, "hlo": _info(table[op["hlo_op"]], table, op["calls"], op["ms"], hbm_bytes_per_s,
                            dots)}
        if op["hlo_op"] in table
        else dict(op)
        for op in ops
    ]  # fmt: skip


def render(kernels: Sequence[dict[str, Any]], top: int = 30) -> Iterator[str]:
    """One line per kernel: ms, launches, category, name; for HLO kernels MB per launch, GB/s
    (fraction of HBM peak) and op_name."""
    for k in kernels[: top or None]:
        line = f"{k['ms']:8.3f} ms {k.get('calls', 0):5.0f}x  {k.get('category', ''):9s} "
        line += f"{k.get('name', k.get('hlo_op', ''))[:44]:44s}"
        info = k.get("hlo")
        if info:
            moved = (info["read_bytes"] + info["written_bytes"]) / 1e6
            line += f" {moved:8.1f} MB"
            if "bytes_per_s" in info:
                line += f" {info['bytes_per_s'] / 1e9:6.0f} GB/s"
            if "hbm_fraction" in info:
                line += f" ({info['hbm_fraction']:4.0%})"
            if "flops_per_s" in info:
                line += f" {info['flops_per_s'] / 1e12:6.1f} TFLOP/s"
            line += f"  {info['op_name'][-60:]}"
        yield line


def read_text(path: Path) -> str:
    """A text file, gunzipped if its name ends in .gz; a ValueError naming it when it is not
    (gzipped) text."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt") as f:
                return f.read()
        return path.read_text()
    except (gzip.BadGzipFile, EOFError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not {'gzipped ' * (path.suffix == '.gz')}text: {e}") from None


def read_hlo(path: Path) -> dict[str, Instruction]:
    """``parse_hlo`` of an HLO text file (``read_text``); a ValueError naming the file when it
    holds no HLO instructions."""
    what = "the step's optimised HLO text, as bench.profile writes it (<case>.hlo.txt.gz)"
    text = read_text(path)
    try:
        table = parse_hlo(text)
    except ValueError as e:
        raise ValueError(f"{path} is not HLO text ({e}): give {what}") from None
    if not table:
        raise ValueError(f"{path} holds no HLO instructions: give {what}")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    from bench.peaks import peak_bandwidth

    p = argparse.ArgumentParser(
        prog="python -m bench.hlo_kernels", description=(__doc__ or "").splitlines()[0]
    )
    p.add_argument("profile", type=Path, help="a case's JSON from bench.profile")
    p.add_argument("hlo", type=Path, help="the step's optimised HLO text (.txt or .txt.gz)")
    p.add_argument("--device", default="", help="device name for the HBM peak, e.g. H200")
    p.add_argument("--top", type=count_or_zero, default=30, help="kernels printed (0: all)")
    args = p.parse_args(argv)
    what = "a case's JSON from bench.profile"
    kernels = read_records(args.profile, "kernels", ("name", "ms"), what)
    kernels = annotate(kernels, read_hlo(args.hlo), peak_bandwidth(args.device))
    print("\n".join(render(kernels, args.top)))
    return 0


if __name__ == "__main__":
    exit_on_error(main)
