"""``--set KEY=VALUE``: command-line overrides of a config dataclass, parsed strictly.

Each value is parsed as its field's type (the field's annotation, else its default's type) and nothing
else is accepted:

* bool: ``true``, ``false``, ``1`` or ``0`` (any case);
* int: decimal digits with an optional sign;
* float: a decimal or scientific number, or ``inf`` / ``-inf`` (never ``nan``);
* str: any non-empty text;
* tuple: a comma list of its entries' type (from the default, else the class default; str when both are
  empty); an empty value is the empty tuple, an empty entry is refused.

A bad item raises ``ValueError`` with one line naming the key and what is allowed. Ranges and choices are
the config's own ``__post_init__`` checks; this only turns text into typed values.
"""

from __future__ import annotations

import dataclasses
import math
import re

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_BOOLS = {"true": True, "1": True, "false": False, "0": False}
_ALLOWED = {bool: "true, false, 1 or 0", int: "an integer", float: "a number or inf, never nan",
            str: "a non-empty text"}
_PLURAL = {bool: "true/false/1/0 values", int: "integers", float: "numbers", str: "non-empty texts"}
_TYPES = {"bool": bool, "int": int, "float": float, "str": str, "tuple": tuple}


def parse_scalar(text: str, typ: type):
    """``text`` as a value of ``typ`` (bool, int, float or str); ValueError saying what is allowed."""
    s = text.strip()
    if typ is bool and s.lower() in _BOOLS:
        return _BOOLS[s.lower()]
    if typ is int and _INT.fullmatch(s):
        return int(s)
    if typ is float and (_FLOAT.fullmatch(s) or s.lower() in ("inf", "+inf", "-inf")):
        v = float(s)
        if math.isinf(v) and s.lower().lstrip("+-") != "inf":  # 1e999 overflows
            raise ValueError(f"expected {_ALLOWED[float]}; {s!r} is beyond the float range")
        return v
    if typ is str and s:
        return s
    raise ValueError(f"expected {_ALLOWED[typ]}")


def _field_type(field: dataclasses.Field, value) -> type | None:
    annotated = field.type if isinstance(field.type, type) else _TYPES.get(str(field.type))
    if annotated is not None:
        return annotated
    return type(value) if type(value) in _TYPES.values() else None


def _entry_type(value: tuple, class_default) -> type:
    proto = value or (class_default if isinstance(class_default, tuple) else ())
    if not proto:
        return str
    if any(isinstance(x, float) for x in proto):
        return float
    return type(proto[0]) if type(proto[0]) in _ALLOWED else str


def _parse_tuple(text: str, entry: type) -> tuple:
    parts = text.split(",") if text.strip() else []
    allowed = f"expected a comma list of {_PLURAL[entry]}"
    if any(not p.strip() for p in parts):
        raise ValueError(f"{allowed}, no entry empty")
    values = []
    for p in parts:
        try:
            values.append(parse_scalar(p, entry))
        except ValueError:
            raise ValueError(f"{allowed}; entry {p.strip()!r} is not one") from None
    return tuple(values)


def parse_overrides(items: list[str] | None, defaults) -> dict:
    """``KEY=VALUE`` strings -> typed overrides of the config dataclass instance ``defaults``.

    Args:
      items: the ``--set`` values, in order; a key may appear once.
      defaults: the config (a dataclass instance) whose fields the keys name and whose values give the types.

    Returns:
      {field name: parsed value}, to pass to ``dataclasses.replace(defaults, **overrides)``.

    Raises:
      ValueError: one line naming the item or key and what is allowed.
    """
    fields = {f.name: f for f in dataclasses.fields(defaults)}
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE; got {item!r}")
        k, v = item.split("=", 1)
        if k not in fields:
            raise ValueError(f"--set: unknown key {k!r} (known: {', '.join(sorted(fields))})")
        if k in out:
            raise ValueError(f"--set {k}: given twice")
        value, f = getattr(defaults, k), fields[k]
        typ = _field_type(f, value)
        if typ is None:
            raise ValueError(f"--set {k}: this field cannot be set from the command line")
        try:
            if typ is tuple:
                out[k] = _parse_tuple(v, _entry_type(value, f.default))
            else:
                out[k] = parse_scalar(v, typ)
        except ValueError as e:
            raise ValueError(f"--set {k}: cannot parse {v!r} ({e})") from None
    return out
