"""Budget forcing (s1: Muennighoff et al. 2025, "s1: Simple test-time scaling", arXiv 2501.19393, Sec. 3.1): a sample
that tries to stop thinking before a minimum thinking length is made to go on by appending "Wait". One rule for both
engines (lm_eval/model.py, lm_eval/vllm.py); no torch here.

What we take from s1's code (github simplescaling/s1: README "vLLM with budget forcing" and its lm-eval fork,
eval/lm-evaluation-harness/lm_eval/models/vllm_causallms.py, `thinking_n_ignore` / `thinking_n_ignore_str`): the
output's token ids are cut before the end-of-thinking delimiter, the word's token ids (`tok_encode("Wait")`) are
appended, and generation is run again from prompt + those ids asking for at least one new token (`min_tokens=1`); at
most a fixed number of times (NUM_IGNORE / thinking_n_ignore: s1's runs use 1, 2 and 4), and every generated token,
forced ones included, counts against the one generation budget.

Where ours differs, and why:
- The trigger is a minimum thinking length, as the s1 paper describes forcing a minimum; its code ignores the first n
  ends whatever their length. A sample whose thinking already has `min_tokens` tokens is left alone.
- The end of thinking is the model's think_end (text: `</think>`, several tokens for the demo's SmolLM2) where s1 has
  its own delimiter token, or the end of sequence while still thinking: a model without a closing marker (the demo's)
  ends its turn instead. As in s1's code, whose thinking stops are its delimiter plus the task's stop strings
  (`until_thinking.extend(stop)`), a stop string of the task (lm-eval's `until`, e.g. `Problem:`) met while thinking is
  an attempt too.
- The attempt is found in the finished output, not by stopping generation at the delimiter: the rows that do not
  trigger are exactly the unforced generation, and only the rows that do are generated again."""

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from reasoning_sae.errors import UserError

WORD = "Wait"       # s1's ignore string
MAX_FORCES = 1      # s1's README: NUM_IGNORE = 1

MODEL_ARGS = ("min_thinking_tokens", "force_word", "max_forces", "max_gen_toks")
SETTINGS = ("benchmark.budget_forcing.min_thinking_tokens", "benchmark.budget_forcing.word",
            "benchmark.budget_forcing.max_forces", "benchmark.max_gen_toks")
"""The names a user gives the four values: sae_steered(_vllm)'s model args, or the evaluate stage's settings."""


class BudgetForcing(NamedTuple):
    min_tokens: int            # thinking shorter than this (generated tokens before the attempt) may not end
    word: str = WORD           # appended in place of the attempt
    max_forces: int = MAX_FORCES  # per sample


def budget_forcing(min_tokens, word=WORD, max_forces=MAX_FORCES, max_gen_toks=None,
                   names: Sequence[str] = MODEL_ARGS) -> BudgetForcing:
    """The settings checked (a one-line UserError naming `names`' setting), before any model loads."""
    min_name, word_name, forces_name, budget_name = names
    for name, value in ((min_name, min_tokens), (forces_name, max_forces)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name}={value!r}: give a whole number >= 1")
    if not isinstance(word, str) or not word.strip():
        raise UserError(f"{word_name}={word!r}: give the text to append when thinking stops early (s1: Wait)")
    if max_gen_toks is not None and min_tokens >= max_gen_toks:
        raise UserError(f"{min_name}={min_tokens} is not below {budget_name}={max_gen_toks}: a sample can never think "
                        f"that long; lower {min_name} or raise {budget_name}")
    return BudgetForcing(min_tokens, word, max_forces)


def budget_setting(benchmark) -> BudgetForcing | None:
    """The evaluate stage's `benchmark.budget_forcing` (a mapping: the config node or a dict) checked against
    benchmark.max_gen_toks; None when it is absent or not enabled."""
    block = benchmark.get("budget_forcing")
    if not block or not block.get("enabled"):
        return None
    return budget_forcing(block.get("min_thinking_tokens"), block.get("word", WORD),
                          block.get("max_forces", MAX_FORCES), benchmark.get("max_gen_toks"), names=SETTINGS)


class Forcer:
    """The rule on one tokenizer: `retry(ids, forces, budget, stops)` says whether a finished sample is forced on.

    `tokenizer` needs `encode(text, add_special_tokens=False)` and `decode(ids, skip_special_tokens=False)` (a HF
    tokenizer); `think_end` is the model's (None: only the end of sequence ends thinking); `eos_ids` the ids that end
    a sequence."""

    def __init__(self, rule: BudgetForcing, tokenizer, think_end: str | None, eos_ids: Iterable[int]):
        self.rule, self.tokenizer, self.think_end = rule, tokenizer, think_end or None
        self.eos_ids = frozenset(int(i) for i in eos_ids if i is not None)
        self.word_ids = self.encode(rule.word)
        if not self.word_ids:
            raise UserError(f"budget forcing word {rule.word!r} has no tokens in this tokenizer: give another word")

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False)) if text else []

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def thinking(self, ids: Sequence[int], stops: Sequence[str] = ()) -> list[int] | None:
        """The ids a sample thought before it first tried to stop thinking: before the first think_end or stop string
        (`stops`) of its text or, with neither, before its end of sequence. None when it never tried: it ran out of
        tokens while thinking. Whatever follows the first end of sequence is padding and ignored."""
        ids = list(ids)
        end = next((i for i, t in enumerate(ids) if t in self.eos_ids), None)
        body = ids if end is None else ids[:end]
        text = self.decode(body)
        marks = [text.find(s) for s in (self.think_end, *stops) if s and s in text]
        if marks:
            return self._before(body, text, min(marks))
        return body if end is not None else None

    def _before(self, body: list[int], text: str, cut: int) -> list[int]:
        """The ids of `text[:cut]`: the longest prefix of `body` that decodes within it (a binary search: decoding
        is monotone in the prefix), plus the re-encoded rest of a token that straddles `cut`."""
        low, high = 0, len(body)  # invariant: body[:low] decodes within text[:cut]
        while low < high:
            mid = (low + high + 1) // 2
            if len(self.decode(body[:mid])) <= cut:
                low = mid
            else:
                high = mid - 1
        return body[:low] + self.encode(text[len(self.decode(body[:low])):cut])

    def retry(self, ids: Sequence[int], forces: int, budget: int, stops: Sequence[str] = ()) -> list[int] | None:
        """The ids to generate on from (the thinking, then the word) when the sample tried to stop thinking with fewer
        than min_tokens thinking tokens, has been forced fewer than max_forces times and has room left in `budget`
        (its generated-token limit); else None: keep the sample as it is."""
        if forces >= self.rule.max_forces:
            return None
        kept = self.thinking(ids, stops)
        if kept is None or len(kept) >= self.rule.min_tokens:
            return None
        forced = kept + self.word_ids
        return forced if len(forced) < budget else None


def force_rounds(first: list[list[int]], budgets: Sequence[int], forcer: Forcer,
                 generate: Callable[[list[int], list[list[int]]], list[list[int]]],
                 stops: Sequence[Sequence[str]]) -> tuple[list[list[int]], list[int]]:
    """Budget forcing over a batch, for either engine: `first` holds each sample's generated ids, `generate(rows,
    prefixes)` generates on from each row's prefix (prompt + prefix, at most budget - len(prefix) new tokens, at
    least one) and returns the new ids. Returns every sample's final ids (prefix + new, cut to its budget) and how
    often each was forced."""
    outputs, forces = [list(ids) for ids in first], [0] * len(first)
    pending = _pending(outputs, forces, budgets, forcer, stops)
    while pending:
        rows = list(pending)
        new = generate(rows, [pending[i] for i in rows])
        for i, ids in zip(rows, new, strict=True):
            outputs[i] = (pending[i] + list(ids))[: budgets[i]]
            forces[i] += 1
        pending = _pending(outputs, forces, budgets, forcer, stops, rows)
    return outputs, forces


def _pending(outputs, forces, budgets, forcer: Forcer, stops, rows=None) -> dict[int, list[int]]:
    rows = range(len(outputs)) if rows is None else rows
    found = {i: forcer.retry(outputs[i], forces[i], budgets[i], stops[i]) for i in rows}
    return {i: ids for i, ids in found.items() if ids is not None}
