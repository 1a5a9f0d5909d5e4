"""What a setting accepts, in one place: its type and a `Rule` (a range or a set of names), and `check_setting`, which
turns a value a user gave into that type or a one-line UserError naming the setting and what to give instead.

Typed config dataclasses (`train.config.TrainConfig`) attach a Rule to each field with `setting(...)`; the settings
outside them are listed in `config_check.py` with the same two parts."""

import math
from collections.abc import Container
from dataclasses import MISSING, dataclass, field
from types import NoneType, UnionType
from typing import Any, get_args

from reasoning_sae.errors import UserError


@dataclass(frozen=True)
class Rule:
    """What a setting accepts beyond its type: numbers in [low, high] (an end left open with low_open /
    high_open), or one of `choices`."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: Container[str] | None = None

    def admits(self, value) -> bool:
        if self.choices is not None:
            return value in self.choices
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        low, high = _bound(self.low), _bound(self.high)
        if self.choices is not None:
            return "one of " + ", ".join(sorted(self.choices))
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {high}"
        return ""


def _bound(value: float | None) -> str:
    """A range end as a user writes it: whole numbers in full (2**32 - 1 is 4294967295, not 4.29497e+09)."""
    return str(value) if isinstance(value, int) else f"{value:g}" if value is not None else ""


def setting(default, **rule) -> Any:
    """A dataclass field whose values must satisfy `Rule(**rule)` (see `check_setting`)."""
    return field(default=default, metadata={"rule": Rule(**rule)})


POSITIVE = {"low": 0, "low_open": True}
NON_NEGATIVE = {"low": 0}
AT_LEAST_ONE = {"low": 1}
FRACTION = {"low": 0, "high": 1}


def _kind(annotation) -> tuple[type, bool]:
    """(the type, whether None is allowed) of an annotation such as `int`, `float` or `str | None`."""
    if isinstance(annotation, UnionType):
        args = [a for a in get_args(annotation) if a is not NoneType]
        return args[0], len(args) < len(get_args(annotation))
    return annotation, False


def _shown(value, quote: bool = True) -> str:
    """A value as a user writes it in an override (strings quoted unless `quote` is false)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value) if isinstance(value, str) and quote else str(value)


def check_setting(key: str, value, annotation, rule: Rule | None = None, default=MISSING):
    """`value` of setting `key` as its type (an int given as 3.0 becomes 3, a float given as 3 becomes 3.0), or a
    one-line UserError naming the setting and what it accepts. Strings are never read as numbers."""
    kind, optional = _kind(annotation)
    rule, given = rule or Rule(), value
    if rule.choices is not None:
        want, ok = rule.describe(), isinstance(value, str) and value in rule.choices
        if value is not None and not ok:
            raise UserError(f"unknown {key} {_shown(value)}: use {want}")
    elif kind is bool:
        want, ok = "true or false", isinstance(value, bool)
    elif kind is int:
        want = " ".join(filter(None, ("a whole number", rule.describe())))
        ok = (isinstance(value, int) or isinstance(value, float) and value.is_integer()) and not isinstance(value, bool)
    elif kind is float:
        want = " ".join(filter(None, ("a finite number", rule.describe())))
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    else:
        want, ok = "text", isinstance(value, kind)
    if value is None:
        ok = optional
    elif ok and kind in (int, float):
        value = kind(value)
        ok = rule.admits(value)
    if not ok:
        hint = " or null" if optional else ""
        hint += f" (default: {_shown(default, quote=False)})" if default is not MISSING else ""
        raise UserError(f"{key}={_shown(given)}: give {want}{hint}")
    return value
