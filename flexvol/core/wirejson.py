"""JSON for the driver's hot path without importing `json`.

`import json` pulls in `re` and costs more than the whole rest of a driver call's imports; the
C accelerator `_json` that `json` itself uses is enough for flat option objects and records.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

_WHITESPACE = " \t\n\r"


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not allowed")


class _ScannerContext:
    """The attributes `_json.make_scanner` reads from a `json.JSONDecoder`."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_reject_constant)
    memo: dict[str, str] = {}  # noqa: RUF012 - the scanner reads and fills it, as json does


_scan: Callable[[str, int], tuple[object, int]] = _json.make_scanner(_ScannerContext())


def loads(text: str) -> object:
    """Parse one JSON value surrounded by optional whitespace; raise ValueError otherwise."""
    start = 0
    end = len(text)
    while start < end and text[start] in _WHITESPACE:
        start += 1
    while end > start and text[end - 1] in _WHITESPACE:
        end -= 1
    if start == end:
        raise ValueError("empty input")
    try:
        value, stop = _scan(text, start)
    except StopIteration as stop_at:
        raise ValueError(f"unexpected text at character {stop_at.value}") from None
    except RecursionError:
        # `[[[[...` thousands deep exhausts the C scanner's recursion limit.
        raise ValueError("nested too deeply") from None
    except SystemError:
        # `_json` reports syntax errors through `json.decoder`, which we deliberately do not
        # import; without it the scanner fails with a bare SystemError instead.
        # Callers say "not valid JSON" themselves: the reason alone, so it is not said twice.
        raise ValueError("truncated or malformed") from None
    if stop != end:
        raise ValueError(f"extra data after the JSON value at character {stop}")
    return value


_encode_string = _json.encode_basestring_ascii


def dumps(value: object) -> str:
    """Render str, int, bool, None, lists and dicts with string keys as compact JSON."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _encode_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        items = ",".join(f"{_encode_string(str(key))}:{dumps(item)}" for key, item in value.items())
        return "{" + items + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(item) for item in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as JSON")
