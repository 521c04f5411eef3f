"""Local paths pass; URLs, and Paths pathlib made of URLs, are refused naming the setting."""

from pathlib import Path

import pytest

from experiments.local_files import local_path


@pytest.mark.parametrize(
    "path", ["gs://bucket/runs", "s3://b/x.npz", "file:///tmp/x", Path("gs://bucket/runs")]
)
def test_a_url_is_refused_naming_the_setting(path: str | Path) -> None:
    with pytest.raises(ValueError, match=r"^workdir '.*' is a URL, .*mount the bucket"):
        local_path(path, what="workdir")


@pytest.mark.parametrize("path", ["runs/vtab", "/tmp/runs", "C:/runs", "C://runs", "runs:1/x", "."])
def test_a_local_path_passes_unchanged(path: str) -> None:
    assert local_path(path, what="workdir") == Path(path)
    assert local_path(Path(path), what="workdir") == Path(path)
