"""Bot parameters as IntelMQ and IntelMQ Manager hand them over: THE place they are normalised.

IntelMQ Manager saves a field the admin never touched as ``''``; runtime.yaml written by hand
has ``null`` or leaves the key out. All three mean "not set" for an optional parameter. Lists
arrive as YAML lists or as comma-separated strings (the Manager's one-line text field).
"""
from __future__ import annotations

from typing import Any, Iterable, List, Optional

__all__ = ["is_unset", "optional", "as_list", "as_int", "as_float"]


def is_unset(value: Any) -> bool:
    """None, or a string that is empty or only whitespace."""
    return value is None or (isinstance(value, str) and not value.strip())


def optional(value: Any, default: Any = None) -> Any:
    """``default`` for an unset value (see :func:`is_unset`), else the value unchanged."""
    return default if is_unset(value) else value


def as_list(value: Any) -> List[Any]:
    """A list parameter: a list/tuple as is (items that are strings stripped, empty ones
    dropped), a comma-separated string split, unset as ``[]``."""
    if is_unset(value):
        return []
    items: Iterable[Any] = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple, set, frozenset)) and not isinstance(value, str):
        raise ValueError(f"expected a list or a comma-separated string, got {type(value).__name__}")
    out = []
    for item in items:
        if isinstance(item, str):
            item = item.strip()
            if not item:
                continue
        out.append(item)
    return out


def _number(value: Any, default: Any, kind: type, name: str) -> Any:
    if is_unset(value):
        return default
    if isinstance(value, bool):
        raise ValueError(f"Parameter {name}: expected a number, got a boolean")
    try:
        return kind(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"Parameter {name}: expected {'an integer' if kind is int else 'a number'}, "
                         f"got {value!r}") from None


def as_int(value: Any, default: Optional[int] = None, name: str = "value") -> Optional[int]:
    """An integer parameter (``"30"`` from the Manager too); unset gives ``default``."""
    return _number(value, default, int, name)


def as_float(value: Any, default: Optional[float] = None, name: str = "value") -> Optional[float]:
    """A number parameter; unset gives ``default``."""
    return _number(value, default, float, name)
