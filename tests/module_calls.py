"""What a Flax forward called: each ``__call__`` of a module class, read as it ran."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn


def calls_of(
    cls: type[nn.Module], read: Callable[[Any, tuple], Any], forward: Callable[[], Any]
) -> list[Any]:
    """``read(module, args)`` of every ``cls.__call__`` while ``forward()`` runs, in call order."""
    seen = []

    def spy(next_fun: Callable, args: tuple, kwargs: dict, context: Any) -> Any:
        if isinstance(context.module, cls) and context.method_name == "__call__":
            seen.append(read(context.module, args))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(spy):
        forward()
    return seen
