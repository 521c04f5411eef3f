"""VTAB-1k style splits for sources that have no fixed split: a seeded permutation.

Split names: ``train800``, ``val200``, ``train800val200``, ``test`` (VTAB-1k) and ``{k}shot``
(k examples of every class). For a pool of examples without an official test set:

    perm = default_rng(seed).permutation(N)
    train800 = perm[:800]; val200 = perm[800:1000]; test = perm[1000:1000 + 10_000]

With an official test set, the permutation runs over the training examples only and ``test``
is the official one (its first 10k). The few-shot sets take, for each class, the first k
training-pool examples in permutation order, val200's left out (it stays a clean validation
set: with 100 classes, 8 shots would otherwise train on a third of it), so a 2-shot set
contains the 1-shot set and lies in train800 whenever train800 holds k of every class.
"""

from __future__ import annotations

import re

import numpy as np

TRAIN_SIZE = 800
VAL_SIZE = 200
TEST_CAP = 10_000
VTAB1K_SPLITS = ("train800", "val200", "train800val200", "test")
_FEW_SHOT = re.compile(r"(\d+)shot")


def few_shot_k(split: str) -> int | None:
    """k for a ``{k}shot`` split name (k >= 1), None for any other name."""
    match = _FEW_SHOT.fullmatch(split)
    if match is None or int(match.group(1)) < 1:
        return None
    return int(match.group(1))


def check_vtab1k_split(split: str) -> None:
    if split not in VTAB1K_SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {VTAB1K_SPLITS}")


def split_indices(
    split: str,
    *,
    labels: np.ndarray,
    num_classes: int,
    seed: int,
    test: np.ndarray | None = None,
) -> np.ndarray:
    """Indices (into ``labels``' examples) of ``split``, see the module docstring.

    labels: (N,) int labels of all examples. test: indices of an official test set within
    those N examples, or None to carve the test set out of the permutation.
    """
    num_examples = labels.shape[0]
    held = TRAIN_SIZE + VAL_SIZE
    if test is None:
        if num_examples <= held:
            raise ValueError(
                f"a VTAB-1k split needs more than {held} examples (800 train + 200 val + a "
                f"test part), got {num_examples}"
            )
        perm = np.random.default_rng(seed).permutation(num_examples)
        test_part = perm[held : held + TEST_CAP]
        pool = np.concatenate([perm[:held], perm[held + TEST_CAP :]])
    else:
        is_train = np.ones(num_examples, dtype=bool)
        is_train[test] = False
        train_ids = np.flatnonzero(is_train)
        if train_ids.size < held:
            raise ValueError(
                f"a VTAB-1k split needs {held} training examples, got {train_ids.size}"
            )
        pool = train_ids[np.random.default_rng(seed).permutation(train_ids.size)]
        test_part = np.asarray(test)[:TEST_CAP]

    named = {
        "train800": pool[:TRAIN_SIZE],
        "val200": pool[TRAIN_SIZE:held],
        "train800val200": pool[:held],
        "test": test_part,
    }
    if split in named:
        return named[split]
    k = few_shot_k(split)
    if k is None:
        raise ValueError(
            f"unknown split {split!r}; expected one of {VTAB1K_SPLITS} or '<k>shot' (e.g. '16shot')"
        )
    shot_pool = np.concatenate([pool[:TRAIN_SIZE], pool[held:]])  # val200 left out
    return _few_shot(shot_pool, labels[shot_pool], k=k, num_classes=num_classes)


def _few_shot(pool: np.ndarray, pool_labels: np.ndarray, *, k: int, num_classes: int) -> np.ndarray:
    """The first k pool entries of every class, in pool order."""
    keep = np.zeros(pool.shape[0], dtype=bool)
    for label in range(num_classes):
        positions = np.flatnonzero(pool_labels == label)[:k]
        if positions.size < k:
            raise ValueError(
                f"{k}-shot split: class {label} has only {positions.size} training examples"
            )
        keep[positions] = True
    return pool[keep]
