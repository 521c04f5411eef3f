"""Argparse types and choices the bench commands share: a bad value is a usage error (exit
status 2) before anything runs. Nothing heavy is imported here (``bench.torch_peers``'s process
imports no JAX)."""

from __future__ import annotations

import argparse
import re

#: The ViT attention a bench command may ask for (``bench.models.choose_attention``).
ATTENTIONS = ("auto", "cudnn", "xla", "none")


def row_regex(text: str) -> str:
    """An argparse type: a regex over row keys name@batch (``--only``), checked."""
    try:
        re.compile(text)
    except re.error as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a regex: {e}") from None
    return text


def layer_shape(text: str) -> tuple[int, int]:
    """An argparse type: a dense layer's shape FAN_INxFAN_OUT (768x3072) -> (768, 3072)."""
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if match is None or 0 in (int(match[1]), int(match[2])):
        raise argparse.ArgumentTypeError(f"{text!r} is not FAN_INxFAN_OUT, e.g. 768x3072")
    return int(match[1]), int(match[2])
