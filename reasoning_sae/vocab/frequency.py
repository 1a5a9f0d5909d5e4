"""Word frequencies in reasoning traces vs reference solutions (paper Sec. 3.1, Fig. 2).

For each word, p_think is its share of all words in the traces and p_solution its share of all words in the
reference solutions of the same problems; words are ranked by diff = p_think - p_solution (the paper's plain
frequency difference, "similar to" Rayson & Garside 2000 but without their log-likelihood). Words that are
frequent in general English are filtered, and the top-k of the rest are kept.

Choices the paper leaves open (v2 Sec. 3.1):
- Tokenisation is not stated. Text is lowercased and split by `WORD_PATTERN`, runs of ASCII letters with an
  optional apostrophe suffix ("let's", "don't"), so numbers, LaTeX commands' backslashes and punctuation are
  dropped (`\\frac` counts as "frac").
- The paper's general-English frequency comes from the Google Books Ngram Corpus (year range not stated); here
  it is `wordfreq.word_frequency(word, "en")`, a blend of corpora including Google Books, available offline.
- The threshold value is not stated. 1e-3 (one word in a thousand) filters function words (the, is, that, we, so)
  and also "but" (4.3e-3), which the paper says exceeds its threshold, while keeping "another" (5.5e-4).
"""

import re
from collections import Counter
from collections.abc import Iterable

import pandas as pd

WORD_PATTERN = re.compile(r"[a-z]+(?:'[a-z]+)?")
DEFAULT_THRESHOLD = 1e-3
DEFAULT_TOP_K = 40
COLUMNS = ("word", "count_think", "count_solution", "p_think", "p_solution", "diff", "general_frequency",
           "filtered", "rank", "kept")


def words(text: str) -> list[str]:
    """The words of `text`, lowercased (see `WORD_PATTERN`)."""
    return WORD_PATTERN.findall(text.lower())


def count_words(texts: Iterable[str]) -> Counter:
    counts: Counter = Counter()
    for text in texts:
        counts.update(words(text or ""))
    return counts


def general_frequency(word: str) -> float:
    """How often `word` occurs in general English (wordfreq; the paper used Google Books Ngram)."""
    from wordfreq import word_frequency

    return word_frequency(word, "en")


def frequency_table(
    reasoning: Iterable[str],
    solutions: Iterable[str],
    top_k: int = DEFAULT_TOP_K,
    threshold: float = DEFAULT_THRESHOLD,
    min_count: int = 1,
) -> pd.DataFrame:
    """One row per word, sorted by diff (descending, ties by word).

    `rank` is the 1-based position by diff among all words; `filtered` marks general_frequency > threshold;
    `kept` marks the top_k unfiltered words. p_think and p_solution are shares of all words of each side,
    computed before words seen fewer than `min_count` times (traces + solutions) are dropped from the table.
    """
    think, solution = count_words(reasoning), count_words(solutions)
    total_think, total_solution = sum(think.values()), sum(solution.values())
    vocab = sorted(w for w in think.keys() | solution.keys() if think[w] + solution[w] >= min_count)
    table = pd.DataFrame({
        "word": pd.Series(vocab, dtype="string"),
        "count_think": pd.Series([think[w] for w in vocab], dtype="int64"),
        "count_solution": pd.Series([solution[w] for w in vocab], dtype="int64"),
    })
    table["p_think"] = table["count_think"] / total_think if total_think else 0.0
    table["p_solution"] = table["count_solution"] / total_solution if total_solution else 0.0
    table["diff"] = table["p_think"] - table["p_solution"]
    table["general_frequency"] = pd.Series([general_frequency(w) for w in vocab], dtype="float64")
    table["filtered"] = table["general_frequency"] > threshold
    table = table.sort_values(["diff", "word"], ascending=[False, True], kind="stable").reset_index(drop=True)
    table["rank"] = pd.Series(range(1, len(table) + 1), dtype="int64")
    unfiltered_position = (~table["filtered"]).cumsum()
    table["kept"] = ~table["filtered"] & (unfiltered_position <= top_k)
    return table[list(COLUMNS)]


def top_words(table: pd.DataFrame) -> pd.DataFrame:
    """The Fig. 2 rows: the kept words and the filtered words ranked among them (up to the last kept word)."""
    if not table["kept"].any():
        return table.iloc[:0]
    last = int(table.loc[table["kept"], "rank"].max())
    return table[table["rank"] <= last].reset_index(drop=True)


def kept_rank(table: pd.DataFrame, word: str) -> int | None:
    """1-based rank of `word` among the unfiltered words, or None if it is absent or filtered."""
    unfiltered = table.loc[~table["filtered"], "word"].tolist()
    return unfiltered.index(word) + 1 if word in unfiltered else None
