"""Answer extraction as in the released evaluation code, graded with math-verify; pass@1 and maj@k per document."""

import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import NamedTuple

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

_ANSWER_LINE = re.compile(r"(?i)Answer\s*:\s*(.*)")
_LAST_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_WRAPPERS = re.compile(r"\\text(?:bf)?|\\mathbf|[\s{}()$]")
_LETTER = re.compile(r"\b([A-D])\b")
_BOX_COMMANDS = ("\\boxed", "\\fbox")
# Gold and predictions are parsed alike: LaTeX (boxed first), then a plain expression.
_EXTRACTION = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())

Extractor = Callable[[str], "str | None"]
Equivalence = Callable[[str, str], bool]


def _braced(text: str, start: int) -> str | None:
    """The contents of the balanced `{...}` group opening at text[start], or None when unclosed."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1 : i]
    return None


def last_boxed(text: str) -> str | None:
    """The contents of the last `\\boxed{...}` / `\\fbox{...}` (balanced braces; `\\boxed 5` too), else None."""
    start = max(text.rfind(command) for command in _BOX_COMMANDS)
    if start < 0:
        return None
    if text.startswith("\\boxed ", start):  # the `\boxed 5$` form: up to the next `$` or line end
        rest = text[start + len("\\boxed ") :].split("$")[0].strip()
        return rest.splitlines()[0] if rest else None
    brace = start + len(next(c for c in _BOX_COMMANDS if text.startswith(c, start)))
    return _braced(text, brace) if text.startswith("{", brace) else None


def extract_answer(text: str, last_number: bool = False) -> str | None:
    """The last `\\boxed{}` contents, else the last `Answer: ...` line; optionally else the last number."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    lines = _ANSWER_LINE.findall(text)
    if lines:
        return lines[-1].strip()
    if last_number:
        numbers = _LAST_NUMBER.findall(text)
        return numbers[-1].replace(",", "") if numbers else None
    return None


def extract_lenient(text: str) -> str | None:
    """`extract_answer` with the last number as a final fallback (the demo task: small models rarely box)."""
    return extract_answer(text, last_number=True)


def extract_choice(text: str) -> str | None:
    """The letter A-D of a multiple-choice response: from `\\boxed{X}` or the last `Answer: X`."""
    answer = extract_answer(text)
    if answer is None:
        return None
    bare = answer.strip("*().$ ").upper()
    if bare in ("A", "B", "C", "D"):
        return bare
    match = _LETTER.search(answer)
    return match.group(1) if match else None


@lru_cache(maxsize=65536)
def _parsed(answer: str) -> tuple:
    return tuple(parse(f"\\boxed{{{answer}}}", list(_EXTRACTION)))


def _as_integer(answer: str) -> int | None:
    """A digit string, also inside `\\text{(...)}`-style wrappers or with a trailing period ("104."), as an int."""
    # math-verify reads `\textbf{(073)}` as a symbol, not 73; AoPS-style answers need this unwrapping.
    digits = _WRAPPERS.sub("", answer).rstrip(".")
    return int(digits) if digits.isdigit() else None


def is_equivalent(answer: str | None, gold: str) -> bool:
    """Whether an extracted answer equals the gold one: as integers when both are digit strings, else math-verify."""
    if answer is None:
        return False
    answer, gold = answer.strip(), str(gold).strip()
    as_int, gold_int = _as_integer(answer), _as_integer(gold)
    if as_int is not None and gold_int is not None:  # AIME "023" == "23"
        return as_int == gold_int
    return answer == gold or verify(list(_parsed(gold)), list(_parsed(answer)))


def same_letter(answer: str | None, gold: str) -> bool:
    """Multiple-choice equivalence: the same letter."""
    return answer is not None and answer == gold


def majority_vote(answers: Sequence[str | None], equivalent: Equivalence = is_equivalent) -> str | None:
    """The most common answer, ties to the earliest; missing (None) answers do not vote."""
    # Answers are grouped greedily by equivalence to each group's first member (math-verify, so "0.5" and
    # "\frac12" vote together); plain string counting would split such votes. Groups keep first-seen order
    # and max() returns the first of equal counts, which breaks ties towards the earliest answer. The released
    # code votes a missing answer as "0"; here it abstains, so an unanswered sample never matches a gold 0.
    groups: list[list] = []  # [representative, count]
    for answer in answers:
        if answer is None:
            continue
        group = next((g for g in groups if equivalent(answer, g[0])), None)
        if group is None:
            groups.append([answer, 1])
        else:
            group[1] += 1
    return max(groups, key=lambda g: g[1])[0] if groups else None


def pass_at_1(correct: Sequence[bool]) -> float:
    """Mean correctness over all samples of a document."""
    return sum(correct) / len(correct) if correct else 0.0


def maj_ks(n_samples: int) -> list[int]:
    """The k of the maj@k reported for n samples: powers of two up to n, and n itself."""
    ks = [2**i for i in range(n_samples.bit_length()) if 2**i <= n_samples]
    return ks + ([n_samples] if n_samples not in ks else [])


class DocScores(NamedTuple):
    """One document's samples graded: extracted answers, per-sample correctness, pass@1 and maj@k."""

    answers: tuple[str | None, ...]
    correct: tuple[bool, ...]
    pass_at_1: float
    maj: dict[int, bool]

    def metrics(self) -> dict[str, float]:
        """The lm-eval metrics of this document: `pass@1` and `maj@k` for each k."""
        return {"pass@1": self.pass_at_1, **{f"maj@{k}": float(ok) for k, ok in self.maj.items()}}


def score_samples(
    responses: Sequence[str],
    gold: str,
    extract: Extractor = extract_answer,
    equivalent: Equivalence = is_equivalent,
) -> DocScores:
    """Grade every sampled response of one document against its gold answer."""
    answers = tuple(extract(r) for r in responses)
    correct = tuple(equivalent(a, gold) for a in answers)
    maj = {k: equivalent(majority_vote(answers[:k], equivalent), gold) for k in maj_ks(len(answers))}
    return DocScores(answers, correct, pass_at_1(correct), maj)
