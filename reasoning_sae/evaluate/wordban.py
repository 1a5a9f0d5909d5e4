"""The word-ban ablation (paper App. A.2, Table 2): generation with the reasoning words' token sequences banned,
against the same number of random words drawn from the reasoning traces' word distribution (p_think).

The paper does not say how words were banned; here each surface form's token sequence is banned with HF's
`NoBadWordsLogitsProcessor` (the last token of a sequence is masked once the rest has been generated), and only
while the model is thinking: once its think_end token (model.think_end, `</think>`) is generated the ban is lifted
for that row (`scope="thinking"`)."""

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from transformers import LogitsProcessor, NoBadWordsLogitsProcessor

from reasoning_sae.errors import UserError
from reasoning_sae.vocab.vocabulary import groups, surface_forms

SCOPES = ("thinking", "all")


def banned_sequences(tokenizer, forms: Iterable[str]) -> list[list[int]]:
    """Token ids of each surface form (no special tokens), deduplicated, in first-seen order."""
    seqs = {tuple(tokenizer.encode(form, add_special_tokens=False)): None for form in forms}
    empty = [f for f in forms if not tokenizer.encode(f, add_special_tokens=False)]
    if empty:
        raise UserError(f"cannot ban {empty}: the tokenizer produces no tokens for them")
    return [list(s) for s in seqs]


def random_words(frequencies: pd.DataFrame, n: int, seed: int, exclude: Iterable[str] = ()) -> list[str]:
    """`n` distinct words drawn with probability p_think from the vocab stage's frequency table, minus `exclude`."""
    excluded = {w.strip().lower() for w in exclude}
    pool = frequencies[~frequencies["word"].isin(excluded) & (frequencies["p_think"] > 0)]
    if len(pool) < n:
        raise UserError(f"the frequency table has {len(pool)} candidate words, fewer than the {n} to ban")
    p = pool["p_think"].to_numpy(dtype=np.float64)
    idx = np.random.default_rng(seed).choice(len(pool), size=n, replace=False, p=p / p.sum())
    return pool["word"].iloc[np.sort(idx)].tolist()


def random_forms(vocabulary: Sequence[str], frequencies: pd.DataFrame, seed: int) -> list[str]:
    """The control for `vocabulary`: as many random words as it has word groups, each in the four surface forms."""
    words = random_words(frequencies, len(groups(vocabulary)), seed, exclude=groups(vocabulary))
    return [form for word in words for form in surface_forms(word)]


class ThinkingOnly(LogitsProcessor):
    """Apply `inner` to the rows that have not generated `think_end_id` yet (all rows when it is None)."""

    def __init__(self, inner: LogitsProcessor, prompt_length: int, think_end_id: int | None):
        self.inner, self.prompt_length, self.think_end_id = inner, prompt_length, think_end_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        banned = self.inner(input_ids, scores.clone())
        if self.think_end_id is None:
            return banned
        thinking_B = ~(input_ids[:, self.prompt_length:] == self.think_end_id).any(dim=1)
        return torch.where(thinking_B[:, None], banned, scores)


def ban_processor(sequences: list[list[int]], prompt_length: int, eos_token_id, think_end_id: int | None,
                  scope: str = "thinking") -> LogitsProcessor:
    """The logits processor banning `sequences` (during thinking only, or everywhere)."""
    if scope not in SCOPES:
        raise UserError(f"unknown ban scope {scope!r}: use one of {SCOPES}")
    inner = NoBadWordsLogitsProcessor(sequences, eos_token_id=eos_token_id)
    return ThinkingOnly(inner, prompt_length, think_end_id if scope == "thinking" else None)
