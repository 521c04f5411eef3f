"""Data-parallel scaling rows (``bench.scaling``): device counts, names, efficiency, FLOPs, and
the suite itself on two CPU devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import chex
import pytest

from bench import scaling
from bench.report import render, with_flops
from bench.results import Row


@pytest.mark.parametrize(
    ("total", "processes", "expected"),
    [(1, 1, [1]), (2, 1, [1, 2]), (6, 1, [1, 2, 4, 6]), (8, 1, [1, 2, 4, 8]), (8, 2, [8])],
)
def test_device_counts(total: int, processes: int, expected: list[int]) -> None:
    assert scaling.device_counts(total, processes) == expected


def test_device_counts_needs_a_device() -> None:
    with pytest.raises(ValueError, match="total devices"):
        scaling.device_counts(0)


def test_row_names_round_trip() -> None:
    assert scaling.row_name("glora-supernet-k1", 4) == "jax/scale/glora-supernet-k1/4dev"
    assert scaling.parse_name("jax/scale/glora-supernet-k1/4dev") == ("glora-supernet-k1", 4)
    assert scaling.parse_name("jax/train/lora-r8") is None
    assert scaling.parse_name("jax/scale/lora-r8/twodev") is None


def _row(name: str, batch: int, step_s: float) -> Row:
    return Row(name=name, batch=batch, step_s=step_s)


def test_efficiency_is_throughput_over_n_times_one_device() -> None:
    rows = [
        _row("jax/scale/lora-r8/1dev", 4, 0.04),  # 100 img/s
        _row("jax/scale/lora-r8/2dev", 8, 0.05),  # 160 img/s
        _row("jax/scale/lora-r8/4dev", 16, 0.05),  # 320 img/s
        _row("jax/scale/glora-supernet-k1/2dev", 8, 0.05),  # no one-device row: left out
        _row("jax/train/lora-r8", 4, 0.01),
    ]
    found = scaling.efficiencies(rows)
    assert [(e.case, e.devices) for e in found] == [("lora-r8", 2), ("lora-r8", 4)]
    assert found[0].value == pytest.approx(160 / 200)
    assert found[1].value == pytest.approx(320 / 400)
    assert "80.0% of 2 x 100.0" in found[0].line()
    text = render(rows, skipped=[], failed=[])
    assert "Data-parallel scaling" in text and "lora-r8 on 4 devices" in text


@pytest.mark.parametrize("one_device_first", [True, False])
def test_efficiency_takes_the_one_device_row_at_the_same_per_device_batch(
    one_device_first: bool,
) -> None:
    # runs at per-device batches 64 and 256 merged: each n-device row against its own batch's
    ones = [
        _row("jax/scale/lora-r8/1dev", 64, 0.04),  # 1600 img/s
        _row("jax/scale/lora-r8/1dev", 256, 0.1),  # 2560 img/s
    ]
    scaled = [
        _row("jax/scale/lora-r8/2dev", 128, 0.05),  # 2560 img/s
        _row("jax/scale/lora-r8/2dev", 512, 0.25),  # 2048 img/s
        _row("jax/scale/lora-r8/2dev", 6, 0.001),  # per-device batch 3: no one-device row
    ]
    rows = [*ones, *scaled] if one_device_first else [*scaled, *ones[::-1]]
    found = {round(e.items_per_s): e.value for e in scaling.efficiencies(rows)}
    chex.assert_trees_all_close(found, {2560: 2560 / (2 * 1600), 2048: 2048 / (2 * 2560)})


def test_step_flops_are_n_one_device_steps_and_mfu_per_device() -> None:
    row = _row("jax/scale/lora-r8/2dev", 8, 0.01)
    scaled = scaling.with_step_flops(row, 1e9, peak=1e12)
    assert scaled.flops == 2e9
    assert scaled.mfu == pytest.approx(2e9 / 0.01 / 2e12)
    assert scaling.with_step_flops(scaled, None, peak=1e12).flops is None
    with pytest.raises(ValueError, match="not a scaling row"):
        scaling.with_step_flops(_row("jax/train/lora-r8", 4, 0.01), 1e9, peak=1e12)


def test_report_fills_scaling_rows_from_the_one_device_count() -> None:
    rows = [_row("jax/scale/lora-r8/2dev", 8, 0.01), _row("jax/scale/flora-r8/2dev", 8, 0.01)]
    filled = with_flops(rows, {"jax/train/lora-r8@4": 1e9}, source="counted", peak=1e12)
    assert (filled[0].flops, filled[0].flops_source) == (2e9, "counted")
    assert filled[0].mfu == pytest.approx(0.1)
    assert filled[1].flops is None  # no count at the per-device batch: left alone


@pytest.mark.slow
def test_scale_suite_on_two_cpu_devices(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2",
    }
    command = [sys.executable, "-m", "bench.jax_suite", "--json", str(out), "--size", "tiny",
               "--suites", "scale", "--window", "1"]  # fmt: skip
    subprocess.run(command, check=True, env=env, timeout=600)
    payload = json.loads(out.read_text())
    assert payload["failed"] == []
    rows = {f"{r['name']}@{r['batch']}": r for r in payload["rows"]}
    for case in ("lora-r8", "glora-supernet-k1"):
        one, two = rows[f"jax/scale/{case}/1dev@4"], rows[f"jax/scale/{case}/2dev@8"]
        assert one["flops"] > 0 and two["flops"] == 2 * one["flops"]
        assert "over 2 devices" in two["note"]
    report = subprocess.run(
        [sys.executable, "-m", "bench.report", str(out)], check=True, env=env,
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert "lora-r8 on 2 devices" in report and "glora-supernet-k1 on 2 devices" in report
    # every other row runs on one device (its MFU is taken against one device's peak)
    check = (
        "import jax; from bench import jax_train; from bench.models import vit_backbone; "
        "from bench.sizes import SIZES; size = SIZES['tiny']; "
        "bench = jax_train.training_bench(vit_backbone(size, attention=None), size, 'train', "
        "None); "
        "p = jax_train.prepare_train_step(bench, jax_train.VIT_CASES[0], batch=4); "
        "assert jax.device_count() == 2; "
        "print({len(x.sharding.device_set) for x in jax.tree.leaves((p.state, p.inputs))})"
    )
    placed = subprocess.run(
        [sys.executable, "-c", check], check=True, env=env, capture_output=True, text=True
    ).stdout  # fmt: skip
    assert placed.strip() == "{1}"


def test_tap_backward_on_a_host_of_two_devices(tmp_path: Path) -> None:
    """The one-read rows run on the first device of a host with several (they hit the kernel's
    mesh refusal before their trace had a mesh of that device)."""
    out = tmp_path / "tap.json"
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2",
    }
    command = [sys.executable, "-m", "bench.tap_backward", "--tokens", "80", "--shapes", "32x64",
               "--tiles", "16,2,16,4,2", "--repeats", "2", "--json", str(out)]  # fmt: skip
    subprocess.run(command, check=True, env=env, timeout=300, capture_output=True)
    rows = json.loads(out.read_text())["rows"]
    assert [r["form"] for r in rows if "error" not in r] == [
        "xla",
        "one-read 16,2,16,4,2",
        "bound: read x, dy once",
    ]


def test_a_scaling_row_whose_batch_does_not_split_gets_no_count() -> None:
    counts = {"jax/train/lora-r8@4": 1e9}
    even = _row("jax/scale/lora-r8/2dev", 8, 0.01)
    assert scaling.one_device_count(even, counts, "jax/train") == 1e9
    # 9 images on 2 devices: no one-device step at a per-device batch of 4 makes that row
    uneven = _row("jax/scale/lora-r8/2dev", 9, 0.01)
    assert scaling.one_device_count(uneven, counts, "jax/train") is None
    (filled,) = with_flops([uneven], counts, source="counted", peak=1e12)
    assert filled.flops is None and filled.mfu is None
