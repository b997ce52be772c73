"""Settings machinery shared by every config dataclass: field metadata (help, choices, ranges), one
`validate()` over it, dict/JSON conversion, and the mapping of fields onto command-line flags.

A setting is declared once, with what the flag's help and the checks need:

    hidden: int = setting(64, "width of the item embedding and every layer", low=1)
    glu: str = setting("glu", "channel mixer after the bidirectional Mamba", choices=("glu", "ffn", "none"))

`validate(obj)` checks every field of a dataclass against that metadata, then calls the class's
own `check()` for rules that tie fields together (e.g. heads must divide hidden). Each error is one
EchorecError naming the flag, so the CLI prints it as one line before anything is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from typing import Any

from echorec.errors import EchorecError


def setting(default: Any, help: str = "", *, choices: tuple | None = None, low: float | None = None,
            high: float | None = None, low_open: bool = False, high_open: bool = False, item_low: float | None = None):
    """A dataclass field with its help line and its allowed values.

    low/high bound a number (inclusive unless *_open); item_low bounds every element of a list; choices
    lists the allowed strings."""
    meta = {"help": help, "choices": choices, "low": low, "high": high, "low_open": low_open,
            "high_open": high_open, "item_low": item_low}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _range_text(m: dict) -> str:
    lo, hi = m.get("low"), m.get("high")
    if lo is not None and hi is not None:
        return f"in {'(' if m['low_open'] else '['}{lo:g}, {hi:g}{')' if m['high_open'] else ']'}"
    if lo is not None:
        return f"{'>' if m['low_open'] else '>='} {lo:g}"
    if hi is not None:
        return f"{'<' if m['high_open'] else '<='} {hi:g}"
    return ""


def _check_number(value, m: dict) -> bool:
    lo, hi = m.get("low"), m.get("high")
    if lo is not None and (value < lo or (m["low_open"] and value == lo)):
        return False
    if hi is not None and (value > hi or (m["high_open"] and value == hi)):
        return False
    return True


def validate(obj, where: str = "") -> None:
    """Check every field of dataclass `obj` against its metadata, then `obj.check()` if it has one."""
    for f in dataclasses.fields(obj):
        m = f.metadata
        if not m:
            continue
        value = getattr(obj, f.name)
        flag = flag_name(f.name)
        if value is None:
            continue  # optional settings (typed `X | None`) are off when None
        if m.get("choices") is not None and value not in m["choices"]:
            raise EchorecError(f"{where}{flag} {short(value)}: use {', '.join(map(str, m['choices']))}")
        if isinstance(value, float) and not math.isfinite(value):
            raise EchorecError(f"{where}{flag} {short(value)}: must be a finite number")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not _check_number(value, m):
            raise EchorecError(f"{where}{flag} {short(value)}: must be {_range_text(m)}")
        if isinstance(value, list):
            if not value:
                raise EchorecError(f"{where}{flag}: give at least one value")
            lo = m.get("item_low")
            if lo is not None and any(v < lo for v in value):
                raise EchorecError(f"{where}{flag} {value}: every value must be >= {lo:g}")
    check = getattr(obj, "check", None)
    if check is not None:
        check()


def help_text(f: dataclasses.Field, default: Any) -> str:
    """One line for --help: the field's own doc, its choices or range, and its default."""
    m = f.metadata or {}
    parts = [m.get("help", "")]
    if m.get("choices"):
        parts.append("one of " + ", ".join(map(str, m["choices"])))
    elif _range_text(m):
        parts.append(_range_text(m))
    shown = ",".join(map(str, default)) if isinstance(default, list) else default
    parts.append(f"default: {shown}")
    return "; ".join(p for p in parts if p).replace("%", "%%")


# -- dict / JSON form -----------------------------------------------------------------------------

def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def _unwrap_optional(tp) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if (origin is typing.Union or origin is types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def short(value: Any, limit: int = 60) -> str:
    """repr() of a value for an error message, cut to `limit` characters (a config may hold a huge value)."""
    text = repr(value) if not isinstance(value, (list, dict)) or len(value) < 20 else f"<{type(value).__name__} of " \
        f"{len(value)}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Turn a JSON value or a CLI string into a value of type `tp`; raise EchorecError if it isn't one."""
    base, optional = _unwrap_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise EchorecError(f"{where}: a value is required")
    try:
        if typing.get_origin(base) in (list, tuple):
            (inner,) = typing.get_args(base)[:1]
            items = value.split(",") if isinstance(value, str) else list(value)
            return [coerce(v.strip() if isinstance(v, str) else v, inner, where) for v in items if v != ""]
        if base is bool:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if base is str:
            # YAML types `0.8` and `2021-10-01` itself; a setting documented as text takes them as written.
            import datetime as dt

            if isinstance(value, (dt.date, dt.datetime)):
                return value.isoformat()
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return repr(value) if isinstance(value, float) else str(value)
            if not isinstance(value, str):
                raise ValueError(value)
            return value
    except (TypeError, ValueError, OverflowError):
        raise EchorecError(f"{where}: expected {getattr(base, '__name__', base)}, got {short(value)}") from None
    return value


def from_dict(cls, data: dict, where: str = "config"):
    """Build dataclass `cls` from a dict; unknown keys are errors (named), missing keys take defaults."""
    if not isinstance(data, dict):
        raise EchorecError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise EchorecError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value, f"{where}.{name}")
        else:
            kwargs[name] = coerce(value, tp, f"{where}.{name}")
    return cls(**kwargs)


# -- command-line flags ---------------------------------------------------------------------------

def flag_fields(cls) -> list[tuple[str, str, Any, Any]]:
    """(flag, field name, type, default) for each field of a config dataclass."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append((flag_name(f.name), f.name, hints[f.name], default))
    return out


def add_flags(group, cls, dest_prefix: str, skip=()) -> list[str]:
    """One flag per field of `cls` on an argparse group; values land in dest `prefix.name` (None if not
    given, so a config file's value is kept). Returns the flags added."""
    added = []
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for flag, name, tp, default in flag_fields(cls):
        if name in skip:
            continue
        base, _ = _unwrap_optional(tp)
        metavar = getattr(base, "__name__", str(base)).replace("typing.", "").upper()
        group.add_argument(flag, dest=f"{dest_prefix}.{name}", default=None, metavar=metavar,
                           help=help_text(fields[name], default))
        added.append(flag)
    return added


class Parser(argparse.ArgumentParser):
    """argparse with echorec's error rule: a mistake is one `error: ...` line and exit status 2."""

    def __init__(self, *args, **kwargs):
        # No prefix matching: model flags are only known after a first pass, and in that pass a
        # model flag such as BSARec's --c would silently match --config.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise EchorecError(f"{self.prog}: {message}")
