"""The reasoning vocabulary R as surface strings, in the released code's `extraction/reason_tokens.json` format.

The paper's final 10 words (v2 App. A.1, Fig. 5) were chosen manually from the top of the frequency ranking.
The released code tracks 34 surface forms: `w`, ` w`, `W`, ` W` for eight words, and only `But` and `Another`
for the last two (their lowercase forms mostly occur outside reasoning; the code has no space-prefixed forms).
Forms are grouped by word (`word_of`: `lstrip().lower()`), which gives |R| = 10 groups for the entropy term of
ReasonScore.
"""

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from reasoning_sae.errors import UserError

WORDS = ("alternatively", "hmm", "maybe", "wait", "perhaps", "let me", "therefore", "however", "but", "another")
# Templates of a word's surface forms: "w" is the lowercase word, "W" the word with a capitalised first letter.
FORMS = ("w", " w", "W", " W")
CAPITALISED_ONLY = ("But", "Another")


def surface_forms(word: str, forms: Sequence[str] = FORMS) -> list[str]:
    """`word` in each form template, e.g. "let me" -> ["let me", " let me", "Let me", " Let me"]."""
    lower = word.lower()
    capital = lower[:1].upper() + lower[1:]
    unknown = [f for f in forms if f.strip() not in ("w", "W")]
    if unknown:
        raise UserError(f"unknown surface form templates {unknown}: use any of {list(FORMS)}")
    return [form.replace("w", lower) if "w" in form else form.replace("W", capital) for form in forms]


DEFAULT_VOCABULARY: tuple[str, ...] = (
    *(form for word in WORDS[:8] for form in surface_forms(word)),
    *CAPITALISED_ONLY,
)


def word_of(form: str) -> str:
    """The word a surface form belongs to (" Wait" -> "wait"): the released code's grouping, `lstrip().lower()`.
    Every grouping of the vocabulary (ReasonScore's |R|, word counts, figures) goes through this."""
    return form.lstrip().lower()


def groups(vocabulary: Iterable[str]) -> dict[str, list[str]]:
    """Surface forms grouped by word (`word_of`), in first-seen order: the released code's grouping."""
    grouped: dict[str, list[str]] = {}
    for form in vocabulary:
        grouped.setdefault(word_of(form), []).append(form)
    return grouped


def check_vocabulary(vocabulary: object, where: str = "vocabulary") -> list[str]:
    """The vocabulary as a list, or a UserError if it is not a non-empty list of non-empty strings."""
    if not isinstance(vocabulary, (list, tuple)):
        raise UserError(f"{where} is not a JSON list of strings: write it as [\"Wait\", \" wait\", ...]")
    if not vocabulary:
        raise UserError(f"{where} is empty: give at least one surface string")
    bad = [v for v in vocabulary if not isinstance(v, str) or not v.strip()]
    if bad:
        raise UserError(f"{where} has entries that are not non-empty strings ({bad[:3]}): remove or fix them")
    return list(vocabulary)


def load_vocabulary(path: str | Path) -> list[str]:
    """A vocabulary saved as a JSON list of surface strings (the released `reason_tokens.json` format)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"vocabulary file {path} does not exist: give the path of a JSON list of strings")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"vocabulary file {path} is not valid JSON ({err}): write a JSON list of strings") from None
    return check_vocabulary(data, f"vocabulary file {path}")


def save_vocabulary(vocabulary: Iterable[str], path: str | Path) -> Path:
    vocabulary = check_vocabulary(list(vocabulary))
    path = Path(path)
    path.write_text(json.dumps(vocabulary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def derive_vocabulary(table: pd.DataFrame, forms: Sequence[str] = FORMS, top_k: int | None = None) -> list[str]:
    """Surface forms of the kept words of a frequency table, best first.

    An automatic alternative to the default: the paper picked its 10 words from this ranking by hand.
    """
    kept = table.loc[table["kept"]].sort_values("rank")["word"].tolist()
    kept = kept if top_k is None else kept[:top_k]
    return check_vocabulary([f for word in kept for f in surface_forms(word, forms)], "derived vocabulary")
