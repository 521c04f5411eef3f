"""A stand-in ``torch`` module for tests that write files the way ``torch.save`` does, without
torch: pickled through it, a file names the real globals (``torch._utils._rebuild_tensor_v2``,
``torch.FloatStorage``, ...), as a reader of real checkpoints expects."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable

import pytest


def install_torch_stand_in(
    monkeypatch: pytest.MonkeyPatch, storage_names: Iterable[str]
) -> types.ModuleType:
    """Put ``torch`` and ``torch._utils`` stand-ins in ``sys.modules`` (for the test's duration)
    with ``_rebuild_tensor_v2``, ``_rebuild_parameter`` and a class per storage name; returns
    the ``torch`` one."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    for name in ("_rebuild_tensor_v2", "_rebuild_parameter"):

        def rebuild(*args: object) -> None:
            raise AssertionError("never called while saving")

        rebuild.__module__, rebuild.__name__, rebuild.__qualname__ = "torch._utils", name, name
        vars(utils)[name] = rebuild
    vars(torch).update(_utils=utils)
    for name in storage_names:
        vars(torch)[name] = type(name, (), {"__module__": "torch"})
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch
