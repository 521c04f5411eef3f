"""bench.autotune_log on small dumps written in XLA's protobuf text format."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
from autotune_dumps import logs, results

from bench import autotune_log


@pytest.fixture
def dumps(tmp_path):
    """A good process (algo 5 measured 0.087 ms, picked) and one whose algo 5 measured 777 ms
    (a stall), so algo 22 (0.938 ms) was picked; the second pair gzipped."""
    good_logs, good_picks = tmp_path / "logs-1.txt", tmp_path / "picks-1.txt"
    good_logs.write_text(logs((87_000, 938_000)))
    good_picks.write_text(results(5))
    slow_logs, slow_picks = tmp_path / "logs-2.txt.gz", tmp_path / "picks-2.txt.gz"
    with gzip.open(slow_logs, "wt") as f:
        f.write(logs((777_000_000, 938_000)))
    with gzip.open(slow_picks, "wt") as f:
        f.write(results(22))
    return f"{good_logs}:{good_picks}", f"{slow_logs}:{slow_picks}"


def test_parse_text_proto_nests_repeats_and_unescapes():
    message = autotune_log.parse_text_proto('a { b: 1 b: 2 c { d: "x \\"y\\"" } } a { } e: ENUM')
    assert message == {"a": [{"b": ["1", "2"], "c": [{"d": ['x "y"']}]}, {}], "e": ["ENUM"]}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a { b: 1", "unbalanced '{': the message ends inside a field"),
        ("a { } }", "unbalanced '}' at character 7"),
        ("a b c", "not protobuf text format at character 0: 'a b c'"),
    ],
)
def test_parse_text_proto_rejects_malformed_text(text, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        autotune_log.parse_text_proto(text)


def test_profiles_picks_and_stalls(dumps):
    good, slow = (d.partition(":") for d in dumps)
    profiles = autotune_log.read_profiles(Path(slow[0]))
    assert [p.fingerprint for p in profiles] == ["f1", "f2"]
    conv, gemm = profiles
    target, shape, window, op_name = conv.key
    assert (target, shape) == ("__cudnn$convForward", "bf16[8,14,14,384]")
    assert (window, op_name) == ("size=7x7 pad=3_3x3_3", "jit(step)/stage2/dwconv")
    assert conv.times_ms == {"CUDNN algo 5 [] ws 0": 777.0, "CUDNN algo 22 [2=5] ws 0": 0.938}
    assert len(gemm.times_ms) == 2  # two Triton tiles stay two configs
    assert autotune_log.stalled(profiles) == [(conv, [777.0])]
    assert autotune_log.stalled(autotune_log.read_profiles(Path(good[0]))) == []
    picks = autotune_log.read_picks(Path(slow[2]))
    assert picks["f1"] == "CUDNN algo 22 [2=5] ws 0"
    assert picks["f2"] == "TRITON triton(block_m=64,num_warps=4)"
    assert picks["f2"] in gemm.times_ms


def test_slower_picks_name_the_conv_and_both_picks(dumps):
    runs = []
    for dump in dumps:
        logs_path, picks_path = autotune_log.split_dump(dump)
        profiles = autotune_log.read_profiles(logs_path)
        runs.append(
            autotune_log.picks_by_instruction(profiles, autotune_log.read_picks(picks_path))
        )
    [(key, (good, slow))] = autotune_log.slower_picks(runs)
    assert key[0] == "__cudnn$convForward"
    assert (good.config, good.time_ms, good.best_ms) == ("CUDNN algo 5 [] ws 0", 0.087, 0.087)
    assert (slow.config, slow.time_ms, slow.best_ms) == ("CUDNN algo 22 [2=5] ws 0", 0.938, 0.938)
    assert autotune_log.slower_picks(runs, ratio=20.0) == []
    assert autotune_log.slower_picks(runs, min_ms=1.0) == []


def test_slower_picks_need_both_the_ratio_and_the_difference():
    key = ("%gemm_fusion_dot.1", "bf16[64,32]", "", "?")
    fast, slow = autotune_log.Pick("a", 0.002, 0.002), autotune_log.Pick("b", 0.004, 0.004)
    runs = [{key: fast}, {key: slow}]
    assert autotune_log.slower_picks(runs) == []  # 2x, but 2 microseconds
    assert autotune_log.slower_picks(runs, min_ms=0.001) == [(key, [fast, slow])]
    assert autotune_log.slower_picks([{key: fast}, {}]) == []  # autotuned in one run only


def test_cli_report(dumps, capsys):
    assert autotune_log.main([*dumps, "--limit-ms", "50"]) == 0
    out = capsys.readouterr().out
    assert "run 1 (" in out and "2 instructions, 4 candidates, 0 measured over 50 ms" in out
    assert "run 2 (" in out and "1 measured over 50 ms" in out
    assert "#0 __cudnn$convForward bf16[8,14,14,384] jit(step)/stage2/dwconv: 777.0 ms of 2" in out
    assert "measured over 1.5x (and 0.01 ms more than) another run's: 1" in out
    assert "run 2: CUDNN algo 22 [2=5] ws 0: 0.938 ms (best 0.938 ms)" in out


def test_dump_arguments_with_colons_and_missing_files(tmp_path, dumps, capsys):
    odd = tmp_path / "a:b"
    odd.mkdir()
    logs_path = odd / "logs.txt"
    logs_path.write_text(logs((87_000, 938_000)))
    assert autotune_log.split_dump(str(logs_path)) == (logs_path, None)
    picks_path = Path(dumps[0].rpartition(":")[2])
    assert autotune_log.split_dump(f"{logs_path}:{picks_path}") == (logs_path, picks_path)
    with pytest.raises(SystemExit):
        autotune_log.main([f"{logs_path}:{tmp_path / 'none.txt'}"])
    err = capsys.readouterr().err
    assert "no autotuning dump" in err and "none.txt" in err
    with pytest.raises(SystemExit):
        autotune_log.main([str(tmp_path / "missing-logs.txt")])
    assert "missing-logs.txt" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text("instruction_profiles {")
    with pytest.raises(SystemExit):
        autotune_log.main([str(bad)])
    assert "unbalanced" in capsys.readouterr().err
