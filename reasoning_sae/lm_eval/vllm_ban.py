"""The word ban (Table 2) under vLLM, through its V1 custom logits-processor API: the same rule as the HF engine's
`NoBadWordsLogitsProcessor` + `ThinkingOnly` (evaluate/wordban.py). A banned sequence's last token is masked
when the tokens before it end the prompt + output so far; with `think_end_id` set, a row is free once it has
generated that token (the model's think_end, `</think>`). Requests opt in with `SamplingParams.extra_args["reasoning_sae_ban"] =
{"sequences": [[ids...], ...], "think_end_id": id | None}`; the others pass through untouched."""

from dataclasses import dataclass

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

KEY = "reasoning_sae_ban"


@dataclass
class _Row:
    sequences: list[list[int]]
    think_end_id: int | None
    prompt: list[int]
    output: list[int]  # vLLM's live list of this request's generated tokens
    scanned: int = 0
    thinking: bool = True

    def still_thinking(self) -> bool:
        if self.thinking and self.think_end_id is not None:
            self.thinking = self.think_end_id not in self.output[self.scanned:]
            self.scanned = len(self.output)
        return self.thinking

    def banned_tokens(self) -> list[int]:
        tokens = []
        for seq in self.sequences:
            prefix = seq[:-1]
            if not prefix or self._ends_with(prefix):
                tokens.append(seq[-1])
        return tokens

    def _ends_with(self, prefix: list[int]) -> bool:
        n, out = len(prefix), self.output
        if len(out) >= n:
            return out[len(out) - n:] == prefix
        head = n - len(out)  # the prefix reaches back into the prompt
        return len(self.prompt) >= head and self.prompt[len(self.prompt) - head:] == prefix[:head] and \
            list(out) == prefix[head:]


class WordBanLogitsProcessor(LogitsProcessor):
    """Masks banned sequences per request (batch rows tracked through vLLM's BatchUpdate)."""

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        self.rows: dict[int, _Row] = {}

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        for index in batch_update.removed:
            self.rows.pop(index, None)
        for index, params, prompt, output in batch_update.added:
            ban = (getattr(params, "extra_args", None) or {}).get(KEY) if params is not None else None
            self.rows.pop(index, None)
            if ban and ban.get("sequences"):
                self.rows[index] = _Row([list(s) for s in ban["sequences"]], ban.get("think_end_id"),
                                        list(prompt or []), output)
        for a, b, direction in batch_update.moved:
            row_a, row_b = self.rows.pop(a, None), self.rows.pop(b, None)
            if row_a is not None:
                self.rows[b] = row_a
            if direction == MoveDirectionality.SWAP and row_b is not None:
                self.rows[a] = row_b

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        for index, row in self.rows.items():
            if row.still_thinking():
                tokens = row.banned_tokens()
                if tokens:
                    logits[index, tokens] = float("-inf")
        return logits
