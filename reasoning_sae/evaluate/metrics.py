"""Generation metrics beyond accuracy (v2 Table 1): thinking length in tokens and reasoning-word rates.

Thinking length follows the released code: the tokens before the model's think_end (`</think>`), or the whole output
when it is absent or the model has none.
Lengths are counted by re-tokenising the returned text (lm-eval returns text, not ids); for the models here
decode-then-encode round-trips exactly on generated text, so this is the generated token count."""

import re
from collections.abc import Iterable, Sequence

import numpy as np

from reasoning_sae.vocab.vocabulary import groups


def thinking_text(text: str, think_end: str | None) -> str:
    """The part of an output before `think_end` (model.think_end; all of it when absent or None)."""
    return text.split(think_end, 1)[0] if think_end else text


def token_count(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False))


def word_counts(text: str, vocabulary: Sequence[str]) -> dict[str, int]:
    """Occurrences of each vocabulary word group (surface forms as whole words, so "but" is not "button")."""
    counts = {}
    for word, forms in groups(vocabulary).items():
        pattern = "|".join(re.escape(f.strip()) for f in sorted(set(forms), key=len, reverse=True))
        counts[word] = len(re.findall(rf"(?<![A-Za-z])(?:{pattern})(?![A-Za-z])", text))
    return counts


def generation_metrics(tokenizer, outputs: Iterable[str], vocabulary: Sequence[str],
                       think_end: str | None) -> dict[str, float]:
    """Mean thinking length (tokens before `think_end`) and output length in tokens, and each word group per 1k
    generated tokens."""
    outputs = list(outputs)
    if not outputs:
        return {}
    thinking = [token_count(tokenizer, thinking_text(o, think_end)) for o in outputs]
    lengths = [token_count(tokenizer, o) for o in outputs]
    totals = {w: 0 for w in groups(vocabulary)}
    for output in outputs:
        for word, n in word_counts(output, vocabulary).items():
            totals[word] += n
    per_1k = 1000.0 / max(sum(lengths), 1)
    return {"think_tokens": float(np.mean(thinking)), "output_tokens": float(np.mean(lengths)),
            "reasoning_words_per_1k": sum(totals.values()) * per_1k,
            **{f"per_1k/{w}": n * per_1k for w, n in totals.items()}}
