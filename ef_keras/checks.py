"""Numbers checked where they enter: type, finiteness, sign and range, with one message style.

A NaN learning rate or a negative epoch count must fail at the flag or constructor that
took it, not train "successfully". Booleans are refused where numbers belong (`True` is an
int in Python, so `classes=True` would otherwise build a one-class model).
"""

from __future__ import annotations

import math
import numbers

from ef_keras.errors import InputError


def _bounds(low, high, low_open, high_open) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


def check_number(name: str, value, *, low=None, high=None, low_open=False, high_open=False, integer=False,
                 error=InputError):
    """Returns `value` (int or float) if it is a finite number in the range; raises `error` otherwise.

    Args:
        name: how the user spelled it (a flag such as "--lr" or an argument such as "classes").
        low, high: inclusive bounds unless `low_open` / `high_open`.
        integer: require an integer (floats such as 3.0 are refused too).
    """
    if integer and low == 1 and high is None and not low_open:
        want = "a positive integer"
    else:
        want = f"{'an integer' if integer else 'a finite number'} {_bounds(low, high, low_open, high_open)}".strip()
    ok_type = isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real)
    if isinstance(value, bool) or not ok_type:
        raise error(f"{name} must be {want}, got {value!r}")
    if not integer and not math.isfinite(value):
        raise error(f"{name} must be {want}, got {value!r}")
    if (low is not None and (value <= low if low_open else value < low)) or \
            (high is not None and (value >= high if high_open else value > high)):
        raise error(f"{name} must be {want}, got {value!r}")
    return int(value) if integer else float(value)


def check_int(name: str, value, low=None, high=None, error=InputError) -> int:
    """An integer in [low, high] (bools refused)."""
    return check_number(name, value, low=low, high=high, integer=True, error=error)


def parse_int_list(name: str, text, length: int | None = None, error=InputError) -> tuple[int, ...]:
    """Parses "96,192" (or a list of strings) into ints; the message names the flag on bad items."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        values = tuple(int(str(v).strip()) for v in items)
    except ValueError as e:
        raise error(f"{name} must be comma-separated integers, got {','.join(map(str, items))!r}") from e
    if length is not None and len(values) != length:
        raise error(f"{name} needs {length} comma-separated integers, got {len(values)}")
    return values


def read_json(path: str, what: str = "JSON file", error=InputError, object_pairs_hook=None):
    """Parses a JSON file; unreadable, non-UTF-8 or malformed content raises `error` naming the file.

    `object_pairs_hook` is `json.load`'s (e.g. one that refuses a key given twice).
    """
    import json

    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f, object_pairs_hook=object_pairs_hook)
    except UnicodeDecodeError as e:
        raise error(f"{what} {path} is not UTF-8 text (byte {e.start}); give a JSON file") from e
    except json.JSONDecodeError as e:
        raise error(f"{what} {path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from e
