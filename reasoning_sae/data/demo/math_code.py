"""Math and code problem families of the demo reasoning corpus; each `_m_*` / `_c_*` maps a seeded
`random.Random` to a `_P` whose answer is computed in Python (code families also carry reference code and tests)."""
from __future__ import annotations

import json
import math
import random

from reasoning_sae.data.demo._common import _ITEMS, _NAMES, _P, _WORDS, _f, _slip


def _m_shop(r: random.Random) -> _P:
    n, it, a, b = r.choice(_NAMES), r.choice(_ITEMS), r.randint(3, 19), r.randint(4, 24)
    t, h = a * b, b // 2
    c = r.randint(2, t // 2)
    return _P(f"{n} buys {a} packs of {it} with {b} {it} in each pack, then gives {c} of them to friends. "
              f"How many {it} does {n} have left?", f"figure out how many {it} {n} has left",
              [f"{a} packs of {b} make {a} × {b} = {t} {it}", f"giving away {c} leaves {t} − {c} = {t - c}"],
              str(t - c), _slip(r, f"{a} × {b}", t),
              f"split the product: {a} × {h} + {a} × {b - h} = {a * h} + {a * (b - h)} = {t}, and {t} − {c} "
              f"= {t - c}",
              f"{t - c} + {c} = {t}, which is the total bought")


def _m_linear(r: random.Random) -> _P:
    x, a, b = r.randint(-9, 15), r.randint(2, 12), r.randint(1, 40)
    c = a * x + b
    return _P(f"Solve for x: {a}x + {b} = {c}.", f"solve {a}x + {b} = {c} for x",
              [f"subtracting {b} from both sides gives {a}x = {c} − {b} = {c - b}",
               f"dividing both sides by {a} gives x = {c - b}/{a} = {x}"],
              str(x), _slip(r, f"{c} − {b}", c - b),
              f"guess and check: x = {x - 1} gives {a * (x - 1) + b}, which is {a} too small, so x = {x}",
              f"{a} × ({x}) + {b} = {a * x} + {b} = {c}")


def _m_percent(r: random.Random) -> _P:
    p, d = r.randrange(40, 400, 20), r.choice((10, 15, 20, 25, 30, 35, 40))
    item, off = r.choice(("jacket", "bicycle", "lamp", "backpack", "printer", "pair of boots")), p * d / 100
    return _P(f"A {item} costs ${p}. During a sale its price is reduced by {d}%. What is the sale price in dollars?",
              f"find the sale price of a ${p} {item} after a {d}% discount",
              [f"{d}% of {p} is {p} × {d}/100 = {_f(off)} dollars",
               f"the sale price is {p} − {_f(off)} = {_f(p - off)} dollars"],
              _f(p - off), _slip(r, f"{p} × {d}/100", off),
              f"note the buyer pays {100 - d}% of the price, and {p} × {_f((100 - d) / 100)} = {_f(p - off)}",
              f"{_f(p - off)} + {_f(off)} = {p}")


def _m_series(r: random.Random) -> _P:
    a, d, n = r.randint(1, 9), r.randint(2, 7), r.randint(8, 30)
    last, s, seq = a + (n - 1) * d, n * (2 * a + (n - 1) * d) // 2, f"{a}, {a + d}, {a + 2 * d}, …"
    return _P(f"Find the sum of the first {n} terms of the arithmetic sequence {seq}.",
              f"find the sum of the first {n} terms of {seq}",
              [f"the common difference is {a + d} − {a} = {d}",
               f"term number {n} is {a} + ({n} − 1) × {d} = {last}",
               f"the sum is {n} × ({a} + {last}) / 2 = {s}"],
              str(s), _slip(r, f"({n} − 1) × {d}", (n - 1) * d),
              f"use S = n/2 × (2a + (n − 1)d) = {n}/2 × ({2 * a} + {(n - 1) * d}) = {s}",
              f"the average term is ({a} + {last})/2 = {_f((a + last) / 2)}, and {n} times that is {s}")


def _factor(n: int) -> str:
    out, p = [], 2
    while n > 1:
        k = 0
        while n % p == 0:
            n, k = n // p, k + 1
        out += [f"{p}^{k}" if k > 1 else str(p)] if k else []
        p += 1
    return " × ".join(out)


def _m_gcd(r: random.Random) -> _P:
    b, a = sorted(r.randint(2, 12) * x for x in r.sample(range(2, 16), 2))
    g, lcm_wanted = math.gcd(a, b), r.random() < .5
    want, ans = ("least common multiple", a * b // g) if lcm_wanted else ("greatest common divisor", g)
    x, y, euclid = a, b, []
    while y:
        euclid.append(f"{x} = {x // y} × {y} + {x % y}")
        x, y = y, x % y
    steps = [f"by the Euclidean algorithm, {'; '.join(euclid)}, so gcd({a}, {b}) = {g}"]
    steps += [f"the least common multiple is {a} × {b} / {g} = {a * b} / {g} = {ans}"] * lcm_wanted
    return _P(f"Find the {want} of {a} and {b}.", f"find the {want} of {a} and {b}", steps, str(ans),
              _slip(r, f"{a} mod {b}", a % b),
              f"factor both numbers: {a} = {_factor(a)} and {b} = {_factor(b)}, which gives {ans}",
              f"{ans} is {'a multiple' if lcm_wanted else 'a divisor'} of both {a} and {b}")


def _m_primes(r: random.Random) -> _P:
    n = r.randint(20, 120)
    ps = [p for p in range(2, n) if all(p % d for d in range(2, int(p ** 0.5) + 1))]
    tens = [sum(1 for p in ps if p // 10 == k) for k in range((n - 1) // 10 + 1)]
    return _P(f"How many prime numbers are less than {n}?", f"count the primes below {n}",
              [f"the primes below {n} are {', '.join(map(str, ps))}", f"counting them gives {len(ps)}"],
              str(len(ps)), ("1 should be on the list too", "1 is not prime, so it does not count"),
              f"count them ten at a time: {' + '.join(map(str, tens))} = {len(ps)}",
              f"the largest prime below {n} is {ps[-1]}, and no number on the list has a divisor up to its square root")


def _m_area(r: random.Random) -> _P:
    w, l = sorted(r.sample(range(6, 31), 2))
    s = r.randint(2, w - 1)
    ans = l * w - s * s
    return _P(f"A rectangular garden measures {l} m by {w} m. A square patio with side {s} m is built in one corner. "
              f"What area of the garden, in square meters, is left for plants?",
              "find the garden area left after the patio",
              [f"the whole rectangle has area {l} × {w} = {l * w}", f"the patio takes {s}² = {s * s}",
               f"the remaining area is {l * w} − {s * s} = {ans}"],
              str(ans), _slip(r, f"{l} × {w}", l * w),
              f"split the L-shape into two rectangles: {l - s} × {w} + {s} × {w - s} = {(l - s) * w} + {s * (w - s)} "
              f"= {ans}", f"{ans} + {s * s} = {l * w}")


def _code(r: random.Random, fn: str, arg: str, desc: str, body: str, ref, gen, steps: list[str],
          slip: tuple[str, str], alt: str) -> _P:
    inputs = [gen() for _ in range(r.randint(3, 5))]
    outputs = [ref(*a) for a in inputs]
    code, call = f"def {fn}({arg}):\n{body}", f"{fn}({', '.join(map(repr, inputs[0]))})"
    tests = json.dumps({"inputs": inputs, "outputs": outputs, "fn_name": fn})
    return _P(f"Write a Python function `{fn}({arg})` that {desc}.\n\nExample: `{call}` should return "
              f"`{outputs[0]!r}`.", f"write a function that {desc}", steps, f"```python\n{code}```", slip, alt,
              f"{call} should give {outputs[0]!r}", code, tests, r.choice(("", f"def {fn}({arg}):")))


def _phrase(r: random.Random, lo: int = 1, hi: int = 6) -> str:
    return " ".join(r.choice(_WORDS) for _ in range(r.randint(lo, hi)))


def _c_reverse(r: random.Random) -> _P:
    return _code(r, r.choice(("reverse_words", "flip_words", "words_backwards")), "s",
                 "returns the words of the string `s` in reverse order, joined by single spaces",
                 "    return ' '.join(s.split()[::-1])\n", lambda s: " ".join(s.split()[::-1]), lambda: [_phrase(r)],
                 ["split the string on whitespace to get the words", "reverse the list with slicing",
                  "join the words back together with single spaces"],
                 ("`s[::-1]` should be enough", "that reverses the characters, not the words"),
                 "walk over the words from the end and collect them in a new list")


def _c_vowels(r: random.Random) -> _P:
    return _code(r, r.choice(("count_vowels", "vowel_count", "num_vowels")), "s",
                 "returns how many vowels (a, e, i, o, u, in either case) the string `s` contains",
                 "    return sum(1 for ch in s.lower() if ch in 'aeiou')\n",
                 lambda s: sum(ch in "aeiou" for ch in s.lower()), lambda: [_phrase(r, 0)],
                 ["lowercase the string so capital vowels are counted",
                  "go through the characters and count those in 'aeiou'", "return the count"],
                 ("checking `ch in 'aeiou'` on the raw string works",
                  "capital vowels like 'A' would be missed, so I lowercase first"),
                 "add up `s.lower().count(v)` for each of the five vowels")


def _c_fizz(r: random.Random) -> _P:
    a, b = r.sample(range(2, 8), 2)
    w1, w2 = r.sample(("Fizz", "Buzz", "Foo", "Bar", "Ping", "Pong", "Zip", "Zap"), 2)
    body = (f"    out = []\n    for i in range(1, n + 1):\n        if i % {a} == 0 and i % {b} == 0:\n"
            f"            out.append('{w1}{w2}')\n        elif i % {a} == 0:\n            out.append('{w1}')\n"
            f"        elif i % {b} == 0:\n            out.append('{w2}')\n        else:\n"
            f"            out.append(str(i))\n    return out\n")
    return _code(r, r.choice(("fizz_variant", "word_game", "replace_multiples")), "n",
                 f"returns a list of strings for 1 to n, replacing multiples of {a} with '{w1}', multiples of {b} "
                 f"with '{w2}', and multiples of both with '{w1}{w2}'", body,
                 lambda n: [(w1 * (i % a == 0) + w2 * (i % b == 0)) or str(i) for i in range(1, n + 1)],
                 lambda: [r.randint(1, 16)],
                 ["loop over i from 1 to n inclusive", f"test divisibility by both {a} and {b} before each one alone",
                  "append the matching word, or the number as a string"],
                 ("`range(1, n)` covers the numbers", "`range(1, n)` stops at n − 1, so I need `range(1, n + 1)`"),
                 "build each entry by joining the words whose divisor fits, falling back to the number")


def _c_digits(r: random.Random) -> _P:
    return _code(r, r.choice(("digit_sum", "sum_of_digits", "add_digits")), "n",
                 "returns the sum of the decimal digits of the integer `n`, ignoring any minus sign",
                 "    return sum(int(d) for d in str(abs(n)))\n", lambda n: sum(int(d) for d in str(abs(n))),
                 lambda: [r.randint(0, 999999) * r.choice((1, 1, -1))],
                 ["take the absolute value", "turn it into a string and convert each character back to an int",
                  "add up the digits"],
                 ("`str(n)` gives the digits directly",
                  "a negative number starts with '-', which int() rejects, so abs(n) comes first"),
                 "take n % 10 and divide by 10 repeatedly until n is zero")


def _second(nums: list[int]) -> int | None:
    vals = sorted(set(nums))
    return vals[-2] if len(vals) > 1 else None


def _c_second(r: random.Random) -> _P:
    return _code(r, r.choice(("second_largest", "runner_up", "second_max")), "nums",
                 "returns the second largest distinct value in the list `nums`, or None if there is none",
                 "    vals = sorted(set(nums))\n    return vals[-2] if len(vals) > 1 else None\n", _second,
                 lambda: [[r.randint(-20, 40) for _ in range(r.randint(1, 7))]],
                 ["remove duplicates with a set", "sort the distinct values",
                  "return the second from the end, or None when fewer than two remain"],
                 ("sorting and returning `nums[-2]` works",
                  "duplicates break that: [5, 5, 3] would give 5, so I dedupe first"),
                 "track the largest and second largest values in one pass")


def _c_long(r: random.Random) -> _P:
    k = r.randint(3, 6)
    return _code(r, r.choice(("count_long_words", "long_word_count")), "s",
                 f"returns how many words in the string `s` are longer than {k} characters",
                 f"    return sum(1 for w in s.split() if len(w) > {k})\n",
                 lambda s: sum(len(w) > k for w in s.split()), lambda: [_phrase(r, 0, 8)],
                 ["split the string into words", f"keep the words whose length is greater than {k}",
                  "return how many there are"],
                 (f"`len(w) >= {k}` is the right test", f"'longer than {k}' is strict, so it must be `len(w) > {k}`"),
                 "filter the words into a list and return its length")
