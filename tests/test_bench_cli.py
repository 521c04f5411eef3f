"""The bench commands, run as ``python -m bench.<name>`` (their ``__main__``, in this process),
answer bad input with one line on stderr: a usage error (status 2) where argparse can tell,
else "error: <type>: <message>" (status 1); never a traceback. Each case fails before anything
is built or compiled."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROW = {"name": "jax/train/lora-r8", "batch": 4, "step_s": 0.5}
#: Files the cases name ({tmp}/<name>): text, or JSON of any other value.
FILES: dict[str, object] = {
    "notjson.json": "not json",
    "kernels.json": {"kernels": []},
    "ops-without-ms.json": {"ops": [{"hlo_op": "fusion.1"}]},
    "not-hlo.txt": "hello",
    "not-gzipped.txt.gz": "hello",
    "task.npz": "an npz",
    "run.json": {"rows": [ROW]},
    "other-rows.json": {"source": "cpu", "flops": {"jax/train/lora-r8@256": 1e9}},
    "run-rows.json": {"source": "cpu", "flops": {"jax/train/lora-r8@4": "many"}},
}

PROFILE = "a case's JSON from bench.profile --no-command-buffers"
HLO = "the step's optimised HLO text, as bench.profile writes it (<case>.hlo.txt.gz)"
COUNTS = "the --out of bench.count_flops"
NO_ROW = "name no training row of size 'tiny': the rows are NAME@BATCH with NAME one of ["


@pytest.mark.parametrize(
    ("module", "argv", "status", "line"),
    [
        ("bench.profile_diff", "{tmp}/absent.json {tmp}/run.json", 1,
         f"error: ValueError: {{tmp}}/absent.json: no such file (give {PROFILE})"),
        ("bench.profile_diff", "{tmp}/notjson.json {tmp}/run.json", 1,
         "error: ValueError: {tmp}/notjson.json is not JSON (Expecting value: line 1 column 1 "
         f"(char 0)): give {PROFILE}"),
        ("bench.profile_diff", "{tmp}/kernels.json {tmp}/run.json", 1,
         f"error: ValueError: {{tmp}}/kernels.json has no top-level 'ops' list: give {PROFILE}"),
        ("bench.profile_diff", "{tmp}/ops-without-ms.json {tmp}/run.json", 1,
         f"error: ValueError: {{tmp}}/ops-without-ms.json: ops[0] has no ms: give {PROFILE}"),
        ("bench.profile_diff", "a.json b.json --top -1", 2,
         "argument --top: expected an integer >= 0, got -1"),
        ("bench.hlo_kernels", "{tmp}/run.json {tmp}/not-hlo.txt", 1,
         "error: ValueError: {tmp}/run.json has no top-level 'kernels' list: give a case's JSON "
         "from bench.profile"),
        ("bench.hlo_kernels", "{tmp}/kernels.json {tmp}/not-hlo.txt", 1,
         f"error: ValueError: {{tmp}}/not-hlo.txt holds no HLO instructions: give {HLO}"),
        ("bench.hlo_kernels", "{tmp}/kernels.json {tmp}/not-gzipped.txt.gz", 1,
         "error: ValueError: {tmp}/not-gzipped.txt.gz is not gzipped text: Not a gzipped file "
         "(b'he')"),
        ("bench.hlo_kernels", "{tmp}/kernels.json {tmp}/absent.txt", 1,
         "error: FileNotFoundError: [Errno 2] No such file or directory: '{tmp}/absent.txt'"),
        ("bench.profile", "--cases lora-r8 lora-r9", 2,
         "unknown vit case 'lora-r9'; choose from ['biases-only', "),
        ("bench.profile", "--batch 0 --cases nope", 2,
         "argument --batch: expected an integer >= 1, got 0"),
        ("bench.profile", "--attention fast", 2, "argument --attention: invalid choice: 'fast'"),
        ("bench.end_to_end", "--task {tmp}/absent.npz --set train.epoch=1", 2,
         "--task {tmp}/absent.npz: no such file (give an images + labels npz)"),
        ("bench.end_to_end", "--task {tmp}/task.npz --like mnist", 2,
         "argument --like: invalid choice: 'mnist'"),
        ("bench.end_to_end", "--task {tmp}/task.npz --method dora", 2,
         "argument --method: invalid choice: 'dora'"),
        ("bench.end_to_end", "--task {tmp}/task.npz --set train.epoch=1", 1,
         "error: ValueError: unknown config key 'train.epoch'"),
        ("bench.xla_flags", "--only (", 2,
         "argument --only: '(' is not a regex: missing ), unterminated subpattern at position 0"),
        ("bench.xla_flags", "--only x --variant noflags", 2,
         "argument --variant: a variant is NAME=FLAGS with a plain NAME, got 'noflags'"),
        ("bench.xla_flags", "--only x --variant a= --variant a=--x", 2,
         "--variant names repeat: ['a', 'a']"),
        ("bench.xla_flags", "--only x --suites fast", 2,
         "argument --suites: invalid choice: 'fast'"),
        ("bench.weight_side", "--size tiny --methods dora lora", 2,
         "argument --methods: invalid choice: 'dora'"),
        ("bench.low_rank_layer", "--shapes 768", 2,
         "argument --shapes: '768' is not FAN_INxFAN_OUT, e.g. 768x3072"),
        ("bench.low_rank_layer", "--tokens 0 --shapes 768", 2,
         "argument --tokens: expected an integer >= 1, got 0"),
        ("bench.tap_backward", "--shapes 768x0 --tiles 1", 2,
         "argument --shapes: '768x0' is not FAN_INxFAN_OUT, e.g. 768x3072"),
        ("bench.jax_suite", "--json {tmp}/j.json --only (", 2, "argument --only: '(' is not a"),
        ("bench.jax_suite", "--json {tmp}/j.json --window 0", 2,
         "argument --window: expected an integer >= 1, got 0"),
        ("bench.torch_peers", "--json {tmp}/t.json --only (", 2, "argument --only: '(' is not"),
        ("bench.run", "--suite train,fast", 2, "unknown suites ['fast']; choose 'all' or from"),
        ("bench.run", "--only (", 2, "argument --only: '(' is not a regex"),
        ("bench.run", "--train-batches 4 0", 2,
         "argument --train-batches: expected an integer >= 1, got 0"),
        ("bench.report", "{tmp}/run.json --flops {tmp}/absent.json", 2,
         f"{{tmp}}/absent.json: no such file (give {COUNTS})"),
        ("bench.report", "{tmp}/run.json --flops {tmp}/run.json", 2,
         f"{{tmp}}/run.json has no top-level 'flops' object and 'source' text: give {COUNTS}"),
        ("bench.report", "{tmp}/run.json --flops {tmp}/run-rows.json", 2,
         f"{{tmp}}/run-rows.json: the FLOPs of ['jax/train/lora-r8@4'] are not numbers: give "
         f"{COUNTS}"),
        ("bench.report", "{tmp}/run.json --flops {tmp}/other-rows.json", 2,
         "{tmp}/other-rows.json counts none of the rows: it counts jax/train/lora-r8@256; the "
         "rows are jax/train/lora-r8@4 (count at the runs' --size, or --keys of their rows)"),
        ("bench.report", "{tmp}/run.json --out {tmp}/absent/out.json", 1,
         "error: FileNotFoundError: [Errno 2] No such file or directory: "
         "'{tmp}/absent/out.json'"),
        ("bench.count_flops", "--size tiny --out f.json --keys jax/train/lora-r9@4", 2,
         f"--keys ['jax/train/lora-r9@4'] {NO_ROW}"),
        ("bench.count_flops", "--size tiny --out f.json --keys jax/train/lora-r8@x", 2,
         f"--keys ['jax/train/lora-r8@x'] {NO_ROW}"),
        ("bench.autotune_log", "{tmp}/not-gzipped.txt.gz", 2,
         "{tmp}/not-gzipped.txt.gz is not gzipped text: Not a gzipped file (b'he')"),
    ],
)  # fmt: skip
def test_a_bench_command_answers_bad_input_with_one_line(
    module: str,
    argv: str,
    status: int,
    line: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """These raised a traceback, or (bench.report --flops of other rows, bench.count_flops
    --keys of no row) ignored what they were given."""
    for name, content in FILES.items():
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail(f"ran {a}"))
    monkeypatch.setattr(sys, "argv", [module, *argv.format(tmp=tmp_path).split()])
    with warnings.catch_warnings(), pytest.raises(SystemExit) as exit_info:
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module is imported already
        runpy.run_module(module, run_name="__main__")
    err, expected = capsys.readouterr().err, line.format(tmp=tmp_path)
    assert exit_info.value.code == status, err
    if status == 1:
        assert err.startswith(expected) and err.count("\n") == 1, err
    else:
        assert err.startswith(f"usage: python -m {module} "), err
        assert err.splitlines()[-1].startswith(f"python -m {module}: error: {expected}"), err
