"""Shared by the demo generator: domains and source tag, name/item/word pools, the problem record `_P` that every
reasoning family returns, and small number/wording helpers."""
from __future__ import annotations

import random
from dataclasses import dataclass

DOMAINS: tuple[str, ...] = ("math", "code", "puzzle", "physics", "chemistry", "biology")
SOURCE = "reasoning_sae.demo"

_NAMES = ("Maya", "Liam", "Sofia", "Omar", "Chen", "Priya", "Lucas", "Amara", "Jonas", "Elena", "Kofi", "Hana",
          "Mateo", "Zoe", "Ravi", "Ingrid", "Tomas", "Leila", "Felix", "Nadia")
_ITEMS = ("pencils", "stickers", "marbles", "cookies", "apples", "postcards", "batteries", "seashells", "candles",
          "notebooks", "buttons", "lemons")
_WORDS = ("river", "stone", "Apple", "quiet", "engine", "sky", "Orbit", "banana", "idea", "cloud", "under", "Echo",
          "pattern", "moon", "a", "is", "bright", "umbrella", "data", "tree")


@dataclass
class _P:
    text: str
    task: str
    steps: list[str]
    answer: str
    slip: tuple[str, str]  # (wrong claim, its correction)
    alt: str = ""
    check: str = ""
    code: str = ""
    tests: str = ""
    starter: str = ""


def _f(x: float, nd: int = 2) -> str:
    if abs(x - round(x)) < 1e-9:
        return str(int(round(x)))
    return f"{x:.{nd}f}".rstrip("0").rstrip(".")


def _cap(s: str) -> str:
    return s if s[1:2].isupper() else s[:1].upper() + s[1:]


def _slip(r: random.Random, expr: str, val: float) -> tuple[str, str]:
    if float(val).is_integer():
        wrong = val + r.choice((-2, -1, 1, 2, 10))
        wrong = val + 1 if wrong < 0 else wrong
    else:
        wrong = val * r.choice((0.9, 1.1))
    return f"{expr} = {_f(wrong)}", f"{expr} is {_f(val)}"
