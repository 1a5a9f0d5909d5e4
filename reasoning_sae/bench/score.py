"""The score stage's one-pass ReasonScore vs the released code's strategy and the floor.

The released `compute_score.py` processes the SAE's features in minibatches of 48 and runs the LM over all
tokens again for every minibatch; here its time is measured on two minibatches and extrapolated to all of
d_sae. The floor is one LM pass to the hook plus one SAE encode of the same tokens. DiffMean's sums (the score
stage's steering vector, score/diffmean.py) ride the same pass: the score pass with them vs without."""

import math

import torch

from reasoning_sae.bench.timing import median_seconds
from reasoning_sae.score.reasonscore import accumulate, reason_scores, score_pass, set_masks, tokenize_vocabulary
from reasoning_sae.vocab.vocabulary import DEFAULT_VOCABULARY

RELEASED_FEATURES_PER_PASS = 48


def scoring_tokens(lm, n_sequences: int, seq_len: int) -> torch.Tensor:
    from reasoning_sae.data.demo import reasoning_rows

    text = "\n\n".join(r["deepseek_reasoning"] for r in reasoning_rows(4 * n_sequences))
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"][: n_sequences * seq_len]
    return torch.tensor(ids).reshape(n_sequences, seq_len)


@torch.inference_mode()
def run(lm, sae, n_sequences: int = 16, seq_len: int = 256, repeats: int = 3, batch_sequences: int = 8) -> dict:
    ids_BS = scoring_tokens(lm, n_sequences, seq_len)
    hook = sae.hook_name(lm)
    words = tokenize_vocabulary(DEFAULT_VOCABULARY, lm.tokenizer)

    def ours():
        reason_scores(lm, sae, ids_BS, DEFAULT_VOCABULARY, ignore_token_ids=(), batch_sequences=batch_sequences)

    def with_diffmean():
        score_pass(lm, sae, ids_BS, DEFAULT_VOCABULARY, ignore_token_ids=(), batch_sequences=batch_sequences)

    def floor():
        for batch in lm.iter_activations(ids_BS, hook, batch_sequences):
            sae.encode(batch.acts)

    def released_minibatch(first: int):
        # one minibatch of the released strategy: a full LM pass for 48 features
        cols = slice(first, first + RELEASED_FEATURES_PER_PASS)
        sums = None
        for batch in lm.iter_activations(ids_BS, hook, batch_sequences):
            feats_BSF = torch.relu(batch.acts @ sae.W_enc[:, cols] + sae.b_enc[cols])
            masks_BSM = set_masks(batch.ids_BS, words, (2, 3), batch.keep_BS)
            sums = accumulate(feats_BSF.flatten(0, 1), masks_BSM.flatten(0, 1), sums)

    seconds = median_seconds({"ours": ours, "with_diffmean": with_diffmean, "floor": floor,
                              "released_2_minibatches": lambda: [released_minibatch(i * 48) for i in range(2)]},
                             repeats)
    passes = math.ceil(sae.d_sae / RELEASED_FEATURES_PER_PASS)
    released = seconds["released_2_minibatches"] / 2 * passes
    return {"tokens": ids_BS.numel(), "d_sae": sae.d_sae, "ours_s": seconds["ours"], "floor_s": seconds["floor"],
            "released_s": released, "passes": passes, "diffmean_s": seconds["with_diffmean"]}


def report(r: dict) -> str:
    return "\n".join([
        f"ReasonScore over {r['tokens']} tokens, d_sae {r['d_sae']}:",
        f"  ours (one pass)                      {r['ours_s']:9.2f} s",
        f"  floor (one LM pass + one SAE encode) {r['floor_s']:9.2f} s   ours / floor = {r['ours_s'] / r['floor_s']:.2f}x"
        f"   (target <= 1.2x: {'PASS' if r['ours_s'] <= 1.2 * r['floor_s'] else 'MISS'})",
        f"  released strategy ({r['passes']} LM passes of 48 features, extrapolated from 2)"
        f" {r['released_s']:9.1f} s   = {r['released_s'] / r['ours_s']:.0f}x ours"
        f"   (target >= 100x: {'PASS' if r['released_s'] >= 100 * r['ours_s'] else 'MISS'})",
        f"  with the DiffMean sums (same pass)   {r['diffmean_s']:9.2f} s   with / without = "
        f"{r['diffmean_s'] / r['ours_s']:.2f}x   (target <= 1.2x: "
        f"{'PASS' if r['diffmean_s'] <= 1.2 * r['ours_s'] else 'MISS'})",
    ])
