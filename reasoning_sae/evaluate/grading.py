"""How sampled answers are graded (`benchmark.grading`), one mode for every task of a run:

- `math_verify` (default; v2 does not say how answers were checked): `answers.extract_answer` then math-verify, integers
  compared as integers; GPQA the letter from `\\boxed{X}` or the last `Answer: X`.
- `strict`: the released code's matching with no verifier configured (its default): the last `\\boxed{}`
  (its own brace matcher), else everything after `Answer:` (its `re.DOTALL` pattern), else "0"; digit strings compared
  as integers ("023" == "23"), anything else by exact string equality, whitespace and all. GPQA: that text as the
  letter when it is one of A-D (any case), else "None". Missing answers vote in maj@k as "0" / "None", as released.
- `llm`: the released code with its verifier (Llama-3.3-70B-Instruct; `verifier.Verifier`): extraction as `strict`;
  a non-integer MATH/AIME answer is judged equivalent or not by the verifier, with the released prompt and the
  reference as the only option (the released code lists earlier samples' answers too; here maj@k groups answers by
  asking the verifier about each pair instead); a GPQA answer that is not a letter gets its letter from the verifier.

The mode travels to lm-eval's `process_results` inside each document (the `grading` field, JSON; never an API key),
set by `benchmarks.load_benchmark` from the task's dataset_kwargs or lm-eval `--metadata`."""

import json
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial

from reasoning_sae.errors import UserError
from reasoning_sae.evaluate import answers
from reasoning_sae.evaluate.answers import DocScores
from reasoning_sae.evaluate.verifier import VerifierConfig, verifier_for

GRADINGS = ("math_verify", "strict", "llm")
DEFAULT_GRADING = "math_verify"
FIELD = "grading"  # the document field carrying the mode to process_results
NO_ANSWER, NO_CHOICE = "0", "None"  # what the released code records when it finds no answer / no letter
_RELEASED_ANSWER = re.compile(r"(?i)Answer\s*:\s*(.*)", re.DOTALL)


@dataclass(frozen=True)
class Grading:
    """A grading mode and, for `llm`, its verifier."""

    mode: str = DEFAULT_GRADING
    """math_verify, strict or llm."""
    verifier: VerifierConfig | None = None
    """The verifier endpoint (mode llm only)."""

    @classmethod
    def from_settings(cls, mode: str | None = None, verifier: Mapping | None = None) -> "Grading":
        """Checked settings: a UserError names the fix (for llm: the endpoint, model or key variable to set)."""
        mode = mode or DEFAULT_GRADING
        if mode not in GRADINGS:
            raise UserError(f"unknown benchmark.grading {mode!r}: use one of {', '.join(GRADINGS)}")
        if mode != "llm":
            return cls(mode)
        config = VerifierConfig.from_mapping(verifier)
        config.check()
        return cls(mode, config)

    @classmethod
    def of(cls, doc: Mapping) -> "Grading":
        """The grading a document carries (math_verify when it carries none)."""
        return _from_json(doc.get(FIELD) or "")

    def to_json(self) -> str:
        return json.dumps({"mode": self.mode, "verifier": self.verifier.as_dict() if self.verifier else None},
                          sort_keys=True)

    def key(self) -> dict | None:
        """The grading's part of an evaluation cell's key: None for the default (older cells keep their keys)."""
        if self.mode == DEFAULT_GRADING:
            return None
        return {"mode": self.mode, **({"verifier": self.verifier.key()} if self.verifier else {})}


@lru_cache(maxsize=64)
def _from_json(text: str) -> Grading:
    if not text:
        return Grading()
    values = json.loads(text)
    config = VerifierConfig.from_mapping(values["verifier"]) if values.get("verifier") else None
    return Grading(values["mode"], config)


# --- The released code's extraction, ported as it is (its tasks' utils.py: last_boxed_only_string, remove_boxed).
def released_last_boxed(text: str) -> str | None:
    """The released `remove_boxed(last_boxed_only_string(text))`: a `\\boxed ` form anywhere wins (up to the next
    `$`), else the last `\\boxed{...}` (`\\fbox{...}` only when there is no `\\boxed`), unstripped; None when absent
    or where the released code would fail its own assertions."""
    if "\\boxed " in text:
        return text.split("\\boxed ")[-1].split("$")[0]
    start = text.rfind("\\boxed")
    if start < 0:
        start = text.rfind("\\fbox")
        if start < 0:
            return None
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if text[i] == "}" and depth == 0:
            box = text[start : i + 1]
            return box[len("\\boxed{") : -1] if box.startswith("\\boxed{") else None
    return None


def released_extract(text: str) -> str | None:
    """The last `\\boxed{}` contents, else everything after the first `Answer:` (the released pattern with re.DOTALL
    spans to the end), else None."""
    boxed = released_last_boxed(text)
    if boxed is not None:
        return boxed
    matches = _RELEASED_ANSWER.findall(text)
    return matches[-1] if matches else None


def released_gold(gold: str) -> str:
    """The released code's gold: "023" -> "23"; anything else as it is."""
    gold = str(gold)
    return str(int(gold)) if gold.isdecimal() else gold


def released_math_answer(text: str, gold: str) -> str:
    """A MATH/AIME response's answer as the released code records it: "0" when none, integers unpadded when the gold
    is an integer too."""
    answer = released_extract(text)
    if answer is None:
        return NO_ANSWER
    return str(int(answer)) if answer.isdecimal() and gold.isdecimal() else answer


def released_choice_text(text: str) -> str:
    """The released GPQA extraction before its letter check: the boxed / `Answer:` text, else the whole response;
    a lower-case letter upper-cased."""
    answer = released_extract(text)
    answer = text if answer is None else answer
    return answer.upper() if answer in ("a", "b", "c", "d") else answer


def released_choice(text: str) -> str:
    """The released GPQA letter with no verifier: A-D, else "None"."""
    answer = released_choice_text(text)
    return answer if answer in ("A", "B", "C", "D") else NO_CHOICE


# --- Scoring per mode.
def _verified_equal(verifier, question: str, answer: str, reference: str) -> bool:
    """llm mode: integers and identical strings need no verifier; otherwise its verdict (none: not equal)."""
    if answer == reference or (answer.isdecimal() and reference.isdecimal()):
        return answer == reference
    return bool(verifier.equivalent(question, reference, answer))


def _verified_choice(verifier, doc: Mapping, text: str) -> str:
    answer = released_choice_text(text)
    if answer in ("A", "B", "C", "D"):
        return answer
    return verifier.choice(doc, answer) or NO_CHOICE


def score_math(doc: Mapping, responses: Sequence[str], lenient: bool = False) -> DocScores:
    """A MATH-500 / AIME (or demo: `lenient`, the last-number fallback under math_verify) document's samples graded."""
    grading, gold = Grading.of(doc), str(doc["answer"])
    if grading.mode == "math_verify":
        extract = answers.extract_lenient if lenient else answers.extract_answer
        return answers.score_samples(responses, gold, extract)
    gold = released_gold(gold)
    extract = partial(released_math_answer, gold=gold)
    if grading.mode == "strict":
        return answers.score_samples(responses, gold, extract, operator.eq)
    equal = partial(_verified_equal, verifier_for(grading.verifier), str(doc["problem"]))
    return answers.score_samples(responses, gold, extract, equal)


def score_choice(doc: Mapping, responses: Sequence[str]) -> DocScores:
    """A GPQA document's samples graded: the letter against doc["answer"]."""
    grading, gold = Grading.of(doc), str(doc["answer"])
    if grading.mode == "math_verify":
        return answers.score_samples(responses, gold, answers.extract_choice, answers.same_letter)
    if grading.mode == "strict":
        return answers.score_samples(responses, gold, released_choice, operator.eq)
    extract = partial(_verified_choice, verifier_for(grading.verifier), doc)
    return answers.score_samples(responses, gold, extract, operator.eq)
