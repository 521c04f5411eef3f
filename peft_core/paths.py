"""Addressing leaves of a param pytree by '/'-joined paths and regex patterns."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from flax import traverse_util

Params = Mapping[str, Any]
Patterns = str | re.Pattern[str] | Sequence[str | re.Pattern[str]]


def flatten(tree: Params) -> dict[str, Any]:
    """Nested dict -> {'a/b/kernel': leaf}, in JAX's order of a dict's leaves (keys sorted at
    each level): what is drawn or grouped layer by layer does not hang on the keys' insertion
    order, which ``jit`` does not keep."""
    return dict(traverse_util.flatten_dict(_to_dict(tree), sep="/"))


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{'a/b/kernel': leaf} -> nested dict; ValueError for a path below another path's leaf."""
    for path in flat:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if (above := "/".join(parts[:i])) in flat:
                raise ValueError(
                    f"param paths {above!r} and {path!r} collide: {above!r} is a leaf, so "
                    "nothing can sit below it"
                )
    return traverse_util.unflatten_dict(dict(flat), sep="/")


def child(module: str, key: str) -> str:
    """The path of ``key`` under the '/'-joined ``module`` path ("" is the tree's root)."""
    return f"{module}/{key}" if module else key


def _to_dict(tree: Params, prefix: str = "") -> dict[str, Any]:
    """Plain nested dicts of ``tree``; TypeError for a non-mapping tree or a non-str key."""
    if not isinstance(tree, Mapping):
        raise TypeError(f"expected a nested mapping of params, got {type(tree).__name__}")
    if bad := [k for k in tree if not isinstance(k, str)]:
        raise TypeError(
            f"param keys must be strings (paths are '/'-joined); {prefix or 'the root'!r} has "
            f"key {bad[0]!r} of type {type(bad[0]).__name__}: give a list of layers (an NNX "
            "model's state has int keys for them) str keys before the adapter, the int keys "
            "back after merge"
        )
    return {
        k: _to_dict(tree[k], child(prefix, k)) if isinstance(tree[k], Mapping) else tree[k]
        for k in sorted(tree)
    }


#: Flags of a compiled pattern that its text can carry inline, as ``(?i)`` etc.
_INLINE_FLAGS = (
    (re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"), (re.VERBOSE, "x"),
    (re.ASCII, "a"),
)  # fmt: skip


def _text(pattern: Any) -> Any:
    """A compiled ``re.Pattern``'s text with its flags inline (``re.compile(p, re.I)`` ->
    ``(?i)p``: fullmatch of the bare text would drop them); anything else as it is."""
    if not isinstance(pattern, re.Pattern):
        return pattern
    inline = "".join(letter for flag, letter in _INLINE_FLAGS if pattern.flags & flag)
    text = pattern.pattern  # bytes: refused by as_patterns
    return f"(?{inline}){text}" if inline and isinstance(text, str) else text


def as_patterns(patterns: Patterns | None) -> tuple[str, ...]:
    """One regex or several as a tuple of regex strings (a compiled ``re.Pattern`` gives its
    text and its flags inline: ``_text``); TypeError for anything else, a one-shot iterator
    (a generator) too: the patterns are read again on every call."""
    if patterns is None:
        return ()
    if isinstance(patterns, str | bytes | re.Pattern):
        many: Iterable[Any] = (patterns,)
    elif isinstance(patterns, Iterable) and not isinstance(patterns, Iterator):
        many = patterns
    else:
        raise TypeError(
            f"path patterns must be a regex string or a sequence of them (a tuple, a list), got "
            f"{type(patterns).__name__} {patterns!r}"
        )
    out = tuple(_text(p) for p in many)
    if bad := [p for p in out if not isinstance(p, str)]:
        raise TypeError(f"path patterns must be regex strings, got {bad!r} in {patterns!r}")
    return out


def matches(path: str, patterns: Patterns | None) -> bool:
    """True when any regex in ``patterns`` matches the whole ``path``."""
    return any(re.fullmatch(p, path) for p in as_patterns(patterns))


def select(
    paths: Iterable[str], patterns: Patterns, *, exclude: Patterns | None = None
) -> list[str]:
    """Paths fully matched by some pattern (and by no ``exclude`` pattern), in order.

    Raises ValueError when a pattern matches nothing, or an ``exclude`` pattern none of the
    paths the patterns match: a typo must not silently adapt nothing, nor adapt what it meant
    to leave out.
    """
    if isinstance(paths, str):
        raise TypeError(f"select takes an iterable of paths, not one path string {paths!r}")
    if patterns is None:
        raise ValueError("target patterns are None: give patterns of the leaves (() for none)")
    paths = list(paths)
    check_patterns(patterns, paths, what="target")
    check_patterns(exclude, paths, what="exclude")
    targeted = [x for x in paths if matches(x, patterns)]
    for p in as_patterns(exclude):
        if not any(re.fullmatch(p, x) for x in targeted):
            raise ValueError(
                f"exclude pattern {p!r} matches none of the {len(targeted)} paths the targets "
                f"{patterns!r} match, so it leaves nothing out; they look like:{_some(targeted)}"
            )
    return [x for x in targeted if not matches(x, exclude)]


def check_patterns(patterns: Patterns | None, paths: Sequence[str], *, what: str) -> None:
    """ValueError for a pattern of ``patterns`` that is no regex or fully matches none of
    ``paths``, naming it as a ``what`` pattern and showing some paths (and one it occurs
    inside, where a substring search would have found it)."""
    for p in as_patterns(patterns):
        try:
            re.compile(p)
        except re.error as e:
            raise ValueError(f"invalid {what} pattern {p!r}: {e}") from e
        if not any(re.fullmatch(p, path) for path in paths):
            inside = [path for path in paths if re.search(p, path)]
            found = (
                f": it occurs inside {len(inside)} path{'s' if len(inside) > 1 else ''}, "
                f"e.g. {inside[0]!r}"
                if inside
                else ""
            )
            raise ValueError(
                f"{what} pattern {p!r} matches no param path (a pattern must match a whole "
                f"path, as re.fullmatch does{found}); paths look like:{_some(paths)}"
            )


def _some(paths: Sequence[str]) -> str:
    """The first 12 of ``paths``, a line each (indented), then "..." where there are more."""
    return "".join(f"\n  {p}" for p in paths[:12]) + ("\n  ..." if len(paths) > 12 else "")


def get_leaf(params: Params, path: str) -> Any:
    """The leaf at a '/'-joined path; KeyError names the path."""
    node: Any = params
    for key in path.split("/"):
        if not isinstance(node, Mapping) or key not in node:
            raise KeyError(f"no param at {path!r}")
        node = node[key]
    return node
