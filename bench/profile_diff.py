"""Where two profiled steps differ: device ms per step, grouped by what each instruction computes.

    python -m bench.profile_diff prof/glora-supernet-k1.json prof/lora-r8-weight.json --top 20

Each file is a case's JSON from ``python -m bench.profile --no-command-buffers`` (its ``ops``,
one row per HLO instruction); its optimised HLO next to it (``<case>.hlo.txt.gz``, as
``bench.profile`` writes it) is read when present. Instructions are grouped by a key that is
the same in both steps for the same work:

- an instruction with a jaxpr ``op_name``: that name without the ``jit(...)/`` prefix and the
  ``vmap(...)`` wrappers (a vmapped step's layers match the plain step's), with layer numbers
  after ``block`` written N (the 12 blocks of a ViT-B are one group), and a GEMM's
  ``/transpose`` or ``/dot_general`` written ``/dot`` (the same product, spelled either way);
- one without (fusions XLA creates, e.g. a GEMV it split out of a reduction): its result and
  operand shapes from the HLO, ``[f32[16,1,3072] <- bf16[16,3168,3072]]``, layouts dropped;
  without the HLO, its instruction name without the number.

Prints the groups by the size of their difference (ms per step in each, the difference,
executions per step in each) and the totals; ``--json`` writes every group.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.hlo_kernels import Instruction, operand_shape, read_hlo
from bench.profile import HLO_SUFFIX
from bench.results import read_records
from experiments.command_line import count_or_zero, exit_on_error

#: instruction-name prefixes of GEMMs: cuBLAS custom-calls and XLA's Triton GEMM fusions
GEMM_PREFIXES = ("custom-call", "gemm_fusion", "cublas")


@dataclasses.dataclass(frozen=True)
class Group:
    """One key's device ms and executions per step in each profile."""

    key: str
    ms: tuple[float, float]
    calls: tuple[float, float]

    @property
    def diff_ms(self) -> float:
        return self.ms[0] - self.ms[1]


def normalize(op_name: str, *, gemm: bool = False) -> str:
    """``jit(step)/transpose(jvp(vmap(ViT)))/Transformer/encoderblock_3/MlpBlock_0/Dense_0/
    transpose`` -> ``transpose(jvp(ViT))/Transformer/encoderblock_N/MlpBlock_0/Dense_0/dot``
    (the last step for a GEMM only)."""
    name = re.sub(r"^jit\([^/]*\)/", "", op_name)
    while True:
        unwrapped = re.sub(r"vmap\(([^()]*)\)", r"\1", name)
        if unwrapped == name:
            break
        name = unwrapped
    name = re.sub(r"(block_?)\d+", r"\1N", name)
    if gemm:
        name = re.sub(r"/(dot_general|transpose)$", "/dot", name)
    return name


def _no_layout(shape: str) -> str:
    return re.sub(r"\{[^}]*\}", "", shape)


def op_key(op: Mapping[str, Any], table: Mapping[str, Instruction]) -> str:
    """The group key of one ``ops`` row (see the module docstring)."""
    name = str(op["hlo_op"])
    instruction = table.get(name)
    op_name = (op.get("hlo") or {}).get("op_name") or (instruction.op_name if instruction else "")
    if op_name:
        return normalize(op_name, gemm=name.startswith(GEMM_PREFIXES))
    if instruction is None:
        return "[" + re.sub(r"[._]\d+$", "", name) + "]"
    operands = ", ".join(_no_layout(operand_shape(o, table)) for o in instruction.operands)
    return f"[{_no_layout(instruction.shape)} <- {operands}]"


def grouped(
    ops: Sequence[Mapping[str, Any]], table: Mapping[str, Instruction]
) -> dict[str, list[float]]:
    """key -> [ms, executions] per step, summed over the key's instructions."""
    out: dict[str, list[float]] = {}
    for op in ops:
        acc = out.setdefault(op_key(op, table), [0.0, 0.0])
        acc[0] += float(op["ms"])
        acc[1] += float(op.get("calls", 0.0))
    return out


def diff(
    a: Sequence[Mapping[str, Any]],
    b: Sequence[Mapping[str, Any]],
    table_a: Mapping[str, Instruction] | None = None,
    table_b: Mapping[str, Instruction] | None = None,
) -> list[Group]:
    """Every key of either step's ``ops``, largest |difference| first."""
    ga, gb = grouped(a, table_a or {}), grouped(b, table_b or {})
    none = [0.0, 0.0]
    groups = []
    for key in sorted(ga.keys() | gb.keys()):
        (ms_a, calls_a), (ms_b, calls_b) = ga.get(key, none), gb.get(key, none)
        groups.append(Group(key, (ms_a, ms_b), (calls_a, calls_b)))
    return sorted(groups, key=lambda g: -abs(g.diff_ms))


def hlo_table(profile: Path) -> dict[str, Instruction]:
    """The parsed HLO next to a profile JSON (``<stem>`` + ``bench.profile.HLO_SUFFIX``, or
    the same gunzipped; ``read_hlo``), or {}."""
    for suffix in (HLO_SUFFIX, HLO_SUFFIX.removesuffix(".gz")):
        path = profile.with_name(profile.stem + suffix)
        if path.exists():
            return read_hlo(path)
    return {}


def load_ops(profile: Path) -> list[dict[str, Any]]:
    """A profile JSON's ``ops``; a ValueError naming the file when it is missing, not a case's
    JSON of ``bench.profile``, or has no ops (profiled with CUDA graphs)."""
    what = "a case's JSON from bench.profile --no-command-buffers"
    ops = read_records(profile, "ops", ("hlo_op", "ms"), what)
    if not ops:
        raise ValueError(
            f"{profile} has no per-instruction times: profile with `python -m bench.profile "
            "--no-command-buffers`"
        )
    return ops


def render(groups: Sequence[Group], labels: tuple[str, str], top: int = 25) -> Iterator[str]:
    """Totals, then one line per group: ms per step in each, difference, executions in each, key."""
    total = (sum(g.ms[0] for g in groups), sum(g.ms[1] for g in groups))
    yield (
        f"A {labels[0]}: {total[0]:.2f} ms per step; B {labels[1]}: {total[1]:.2f}; "
        f"A - B {total[0] - total[1]:+.2f}"
    )
    yield f"{'ms A':>8} {'ms B':>8} {'A - B':>8} {'runs A':>6} {'runs B':>6}  key"
    for g in groups[: top or None]:
        yield (
            f"{g.ms[0]:8.3f} {g.ms[1]:8.3f} {g.diff_ms:+8.3f} {g.calls[0]:6.0f} {g.calls[1]:6.0f}"
            f"  {g.key}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.profile_diff", description=(__doc__ or "").splitlines()[0]
    )
    p.add_argument("a", type=Path, help="a case's JSON from bench.profile --no-command-buffers")
    p.add_argument("b", type=Path, help="the case to compare it with")
    p.add_argument("--top", type=count_or_zero, default=25, help="groups printed (0: all)")
    p.add_argument("--json", type=Path, default=None, help="write every group here")
    args = p.parse_args(argv)
    groups = diff(load_ops(args.a), load_ops(args.b), hlo_table(args.a), hlo_table(args.b))
    print("\n".join(render(groups, (args.a.stem, args.b.stem), args.top)))
    if args.json is not None:
        rows = [
            {"key": g.key, "ms": list(g.ms), "calls": list(g.calls), "diff_ms": g.diff_ms}
            for g in groups
        ]
        args.json.write_text(
            json.dumps({"a": str(args.a), "b": str(args.b), "groups": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    exit_on_error(main)
