"""What XLA's GPU autotuner measured and picked, read from its dumps: stalled measurements and
picks that are slower in one process than in another.

    export XLA_FLAGS="--xla_gpu_dump_autotune_logs_to=logs-1.txt \
                      --xla_gpu_dump_autotune_results_to=picks-1.txt"
    python -m bench.jax_suite ...          # or any JAX program; once per process to compare
    python -m bench.autotune_log logs-1.txt:picks-1.txt logs-2.txt.gz:picks-2.txt.gz

XLA times each candidate config of an instruction once (after one untimed run) and keeps the
fastest. Its timer holds the stream with a delay kernel that gives up after about 100 ms, so a
host stall longer than that is measured as the kernel's own time: a candidate "measured over
``--limit-ms``" may be a stall, and if it was the best candidate, the pick is a slower one. On an
H200 that made ConvNeXt-T's step 15 ms slower in 2 of 13 processes (docs/benchmarks.md, calls
85-87: the stage-2 depthwise conv's best cuDNN algorithm, 0.087 ms, measured 777 ms).

For each dump this prints the measurements over the limit (instruction, its output shape and
op name, the times). Given LOGS:PICKS for two or more processes, it also lists every
instruction (cuDNN conv, GEMM fusion, ...) whose pick measured over ``--ratio`` times, and over
``--min-ms`` more than, another process's pick, with each process's pick, its measured time and
the best time measured; instructions are matched by call target (or instruction name), output
shape, window and op name, so the convs of different programs line up.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.hlo_kernels import read_text
from experiments.command_line import exit_on_error

#: The delay kernel's timeout (``delay_kernel_cuda.cu.cc``: 2e8 cycles, ~100 ms at 2 GHz).
STALL_MS = 100.0
#: A pick is listed as slower when it measured over this many times another run's pick ...
SLOWER_RATIO = 1.5
#: ... and over this many ms more (so that microsecond GEMM tiles' noise is not listed).
SLOWER_MIN_MS = 0.01

_TOKEN = re.compile(
    r'\s*(?:(?P<open>\w+)\s*:?\s*\{|(?P<key>\w+)\s*:\s*(?P<value>"(?:[^"\\]|\\.)*"|[^\s{}]+)'
    r"|(?P<close>\}))"
)

Message = dict[str, list[Any]]
#: (call target or fusion, output shape, window, op name): an instruction across programs.
Key = tuple[str, str, str, str]


def parse_text_proto(text: str) -> Message:
    """A protobuf text-format message as nested dicts: every field a list of its values (str for
    scalars, unquoted and unescaped; Message for sub-messages)."""
    stack: list[Message] = [{}]
    pos = 0
    while pos < len(text.rstrip()):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError(
                f"not protobuf text format at character {pos}: {text[pos : pos + 60]!r}"
            )
        pos = match.end()
        if match["open"]:
            child: Message = {}
            stack[-1].setdefault(match["open"], []).append(child)
            stack.append(child)
        elif match["close"]:
            if len(stack) == 1:
                raise ValueError(f"unbalanced '}}' at character {pos}")
            stack.pop()
        else:
            value = match["value"]
            if value.startswith('"'):
                value = value[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
            stack[-1].setdefault(match["key"], []).append(value)
    if len(stack) != 1:
        raise ValueError("unbalanced '{': the message ends inside a field")
    return stack[0]


def _first(message: Message, field: str, default: Any = None) -> Any:
    return message.get(field, [default])[0]


def _fields(message: Message) -> str:
    """The scalar fields of a message and its sub-messages, depth first, as k=v."""
    parts = []
    for field, values in message.items():
        for value in values:
            parts.append(
                f"{field}({_fields(value)})" if isinstance(value, dict) else f"{field}={value}"
            )
    return ",".join(parts)


def config_name(config: Message) -> str:
    """One line for an autotuning config: its backend, then for cuDNN the engine (algo_id), its
    tuning knobs and its workspace bytes, for other backends every field of the config."""
    backend = _first(config, "backend", "?")
    backend_config = _first(config, "backend_config", {})
    algorithm = _first(backend_config, "algorithm")
    if algorithm is None:
        return f"{backend} {_fields(backend_config)}".rstrip()
    knobs = ",".join(
        f"{_first(k, 'key')}={_first(k, 'value')}" for k in algorithm.get("tuning_knobs", [])
    )
    workspace = _first(_first(algorithm, "workspace_size", {}), "value", "0")
    return f"{backend} algo {_first(algorithm, 'algo_id', '0')} [{knobs}] ws {workspace}"


@dataclasses.dataclass(frozen=True)
class Profile:
    """One autotuned instruction of a logs dump: ``times_ms`` maps each candidate config (as
    ``config_name``) to its one measured time, in the order XLA profiled them."""

    index: int
    fingerprint: str
    hlo: str
    times_ms: dict[str, float]

    @property
    def key(self) -> Key:
        """The instruction's ``Key``: the same across programs."""
        return instruction_key(self.hlo)


def instruction_key(hlo: str) -> Key:
    shape = re.search(r"= \(?([a-z0-9]+\[[^\]]*\])", hlo)
    window = re.search(r"window=\{([^}]*)\}", hlo)
    target = re.search(r'custom_call_target="([^"]+)"', hlo)
    op_name = re.search(r'op_name="([^"]+)"', hlo)
    return (
        target[1] if target else hlo.split("=", 1)[0].strip(),
        shape[1] if shape else "?",
        window[1] if window else "",
        op_name[1] if op_name else "?",
    )


def read_profiles(path: Path) -> list[Profile]:
    """The instructions of a ``--xla_gpu_dump_autotune_logs_to`` dump."""
    profiles = []
    for index, p in enumerate(parse_text_proto(read_text(path)).get("instruction_profiles", [])):
        times: dict[str, float] = {}
        for candidate in p.get("config_profiles", []):
            nanos = _first(_first(candidate, "run_time", {}), "nanos")
            if nanos is not None:
                times.setdefault(config_name(_first(candidate, "config", {})), int(nanos) / 1e6)
        profiles.append(
            Profile(index, _first(p, "hlo_fingerprint", ""), _first(p, "hlo_text", ""), times)
        )
    return profiles


def read_picks(path: Path) -> dict[str, str]:
    """hlo fingerprint -> picked config (``config_name``) of a
    ``--xla_gpu_dump_autotune_results_to`` dump."""
    picks = {}
    for entry in parse_text_proto(read_text(path)).get("entries", []):
        fingerprint = _first(_first(_first(entry, "key", {}), "target", {}), "hlo_fingerprint")
        config = _first(_first(entry, "value", {}), "optimal_config")
        if fingerprint is not None and config is not None:
            picks[fingerprint] = config_name(config)
    return picks


def stalled(
    profiles: Sequence[Profile], limit_ms: float = STALL_MS
) -> list[tuple[Profile, list[float]]]:
    """Each instruction with candidates measured over ``limit_ms``, and those times."""
    found = []
    for p in profiles:
        over = [t for t in p.times_ms.values() if t > limit_ms]
        if over:
            found.append((p, over))
    return found


@dataclasses.dataclass(frozen=True)
class Pick:
    """An instruction's pick in one process: the config, its measured time, the best measured
    time."""

    config: str
    time_ms: float | None
    best_ms: float | None


def picks_by_instruction(profiles: Sequence[Profile], picks: dict[str, str]) -> dict[Key, Pick]:
    """``instruction_key`` -> ``Pick`` for every instruction of one process with a pick."""
    found = {}
    for p in profiles:
        if p.fingerprint not in picks:
            continue
        config = picks[p.fingerprint]
        best = min(p.times_ms.values()) if p.times_ms else None
        found[p.key] = Pick(config, p.times_ms.get(config), best)
    return found


def slower_picks(
    runs: Sequence[dict[Key, Pick]],
    ratio: float = SLOWER_RATIO,
    min_ms: float = SLOWER_MIN_MS,
) -> list[tuple[Key, list[Pick | None]]]:
    """The instructions whose pick in one run measured over ``ratio`` times, and over ``min_ms``
    more than, the fastest pick of another run."""
    keys = sorted(set().union(*runs), key=lambda k: (k[3], k[0]))
    rows = []
    for key in keys:
        picks = [run.get(key) for run in runs]
        times = [p.time_ms for p in picks if p is not None and p.time_ms is not None]
        if times and max(times) > ratio * min(times) and max(times) - min(times) > min_ms:
            rows.append((key, picks))
    return rows


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.3f} ms"


def split_dump(dump: str) -> tuple[Path, Path | None]:
    """``LOGS`` or ``LOGS:PICKS`` -> (logs, picks or None); a logs path may itself hold ':'.
    A file that is not there is a FileNotFoundError naming it."""
    if Path(dump).is_file():
        return Path(dump), None
    logs, sep, picks = dump.rpartition(":")
    paths = (Path(logs), Path(picks)) if sep else (Path(dump), None)
    for path in paths:
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"no autotuning dump {str(path)!r} (from argument {dump!r})")
    return paths


def report(
    dumps: Sequence[tuple[Path, Path | None]],
    limit_ms: float = STALL_MS,
    ratio: float = SLOWER_RATIO,
    min_ms: float = SLOWER_MIN_MS,
) -> str:
    """The printed report on (logs, picks or None) dumps, one per process, as numbered runs."""
    lines: list[str] = []
    runs: list[tuple[int, dict[Key, Pick]]] = []
    for i, (logs, picks) in enumerate(dumps, 1):
        profiles = read_profiles(logs)
        found = stalled(profiles, limit_ms)
        candidates = sum(len(p.times_ms) for p in profiles)
        over = sum(len(times) for _, times in found)
        lines.append(
            f"run {i} ({logs}): {len(profiles)} instructions, {candidates} candidates, "
            f"{over} measured over {limit_ms:g} ms"
        )
        for p, times in found:
            target, shape, _, op_name = p.key
            shown = ", ".join(f"{t:.1f}" for t in times)
            lines.append(
                f"  #{p.index} {target} {shape} {op_name}: {shown} ms of {len(p.times_ms)}"
            )
        if picks is not None:
            runs.append((i, picks_by_instruction(profiles, read_picks(picks))))
    if len(runs) > 1:
        rows = slower_picks([by_key for _, by_key in runs], ratio, min_ms)
        lines.append(
            f"instructions whose pick in one run measured over {ratio:g}x (and {min_ms:g} ms more"
            f" than) another run's: {len(rows)}"
        )
        for key, picks_per_run in rows:
            lines.append("  " + " | ".join(key))
            for (i, _), pick in zip(runs, picks_per_run, strict=True):
                if pick is None:
                    lines.append(f"    run {i}: not autotuned")
                else:
                    measured = f"{_ms(pick.time_ms)} (best {_ms(pick.best_ms)})"
                    lines.append(f"    run {i}: {pick.config}: {measured}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.autotune_log", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("dumps", nargs="+", help="LOGS or LOGS:PICKS (plain or .gz)")
    parser.add_argument(
        "--limit-ms", type=float, default=STALL_MS, help="list measurements over this"
    )
    parser.add_argument(
        "--ratio", type=float, default=SLOWER_RATIO, help="list picks slower by more ..."
    )
    parser.add_argument(
        "--min-ms", type=float, default=SLOWER_MIN_MS, help="... and by more than this"
    )
    args = parser.parse_args(argv)
    try:
        print(report([split_dump(d) for d in args.dumps], args.limit_ms, args.ratio, args.min_ms))
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    return 0


if __name__ == "__main__":
    exit_on_error(main)
