"""The falsify stage's passes vs the ReasonScore pass they mirror, over the same number of tokens.

The falsification reads every text once (reasoning, chat, injected and ablated sequences) and encodes only the
features it tests, so per token it should cost what the one-pass ReasonScore costs: the target is at most 1.2x. Its
texts hold more tokens than the inputs (the injected copies), so ReasonScore is timed over as many tokens as the
falsification read, demo reasoning text cut to the same shape."""

import numpy as np
import torch

from reasoning_sae.bench.score import scoring_tokens
from reasoning_sae.bench.timing import median_seconds
from reasoning_sae.falsify import Settings, falsify
from reasoning_sae.score.reasonscore import reason_scores
from reasoning_sae.vocab.vocabulary import DEFAULT_VOCABULARY

F_R, RANDOM = 28, 100  # the demo's |F_R| and the random controls


def chat_tokens(lm, n_sequences: int, seq_len: int) -> torch.Tensor:
    from reasoning_sae.data.demo import chat_rows

    text = "\n\n".join(m["content"] for r in chat_rows(8 * n_sequences, seed=1) for m in r["conversation"])
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"][: n_sequences * seq_len]
    return torch.tensor(ids).reshape(n_sequences, seq_len)


@torch.inference_mode()
def run(lm, sae, n_sequences: int = 8, seq_len: int = 256, repeats: int = 2, batch_sequences: int = 8) -> dict:
    reasoning_RS, chat_HS = scoring_tokens(lm, n_sequences, seq_len).numpy(), chat_tokens(lm, n_sequences, seq_len)
    features = np.random.default_rng(0).choice(sae.d_sae, min(F_R + RANDOM, sae.d_sae), replace=False).tolist()
    groups = {f: "F_R" if i < F_R else "random" for i, f in enumerate(features)}  # each with triggers of its own
    settings = Settings(batch_sequences=batch_sequences)

    def ours():
        return falsify(lm, sae, reasoning_RS, chat_HS.numpy(), groups, {}, DEFAULT_VOCABULARY, settings,
                       sink_positions=1)

    tokens = sum(ours().tokens.values())
    same_ids = scoring_tokens(lm, tokens // seq_len, seq_len)

    def reasonscore():
        reason_scores(lm, sae, same_ids, DEFAULT_VOCABULARY, batch_sequences=batch_sequences, sink_positions=1)

    seconds = median_seconds({"ours": ours, "reasonscore": reasonscore}, repeats)
    return {"tokens": tokens, "features": len(features), "ours_s": seconds["ours"],
            "reasonscore_s": seconds["reasonscore"]}


def report(r: dict) -> str:
    ratio = r["ours_s"] / r["reasonscore_s"]
    return "\n".join([
        f"Falsification of {r['features']} features, {r['tokens']} tokens read (reasoning, chat, injected, ablated):",
        f"  ours (two passes, each text read once)   {r['ours_s']:9.2f} s",
        f"  ReasonScore pass over as many tokens      {r['reasonscore_s']:9.2f} s   ours / ReasonScore = {ratio:.2f}x"
        f"   (target <= 1.2x: {'PASS' if ratio <= 1.2 else 'MISS'})",
    ])
