"""ReasonScore (paper Eq. 3-6): how specifically each SAE feature fires around reasoning words.

For a vocabulary R of words (surface forms grouped by `lstrip().lower()`), D_R^W holds the tokens within a window
(`before` tokens before, `after` after) of any occurrence of a word of R, D_¬R^W every other token, and
D_{r_j}^W the window tokens of word r_j alone. With mu(i, D) the mean activation of feature i over D:

    ReasonScore_i = mu(i, D_R^W) / sum_j mu(j, D_R^W) * H_i^alpha  -  mu(i, D_¬R^W) / sum_j mu(j, D_¬R^W)
    H_i = -(1 / log |R|) sum_j p_i(r_j) log p_i(r_j),   p_i(r_j) = mu(i, D_{r_j}^W) / sum_k mu(i, D_{r_k}^W)

One pass over the tokens gives every feature's sums: the sets are a small [tokens, |R| + 2] mask matrix and the
sums its product with the [tokens, d_sae] activations. A token in several windows counts once in D_R^W.
"""

import logging
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from reasoning_sae.errors import UserError
from reasoning_sae.score.diffmean import DiffMean, diff_mean
from reasoning_sae.vocab.vocabulary import word_of

log = logging.getLogger(__name__)
EPS = 1e-12  # as the released code


class WordForms(NamedTuple):
    groups: list[str]
    """The words of R (surface forms grouped by lstrip().lower()), in vocabulary order."""
    forms: list[tuple[int, torch.Tensor]]
    """(group index, token ids) for every surface form."""


def tokenize_vocabulary(vocabulary: Sequence[str], tokenizer) -> WordForms:
    if not vocabulary:
        raise UserError("the reasoning vocabulary is empty: give at least one word (see vocab.file)")
    groups: list[str] = []
    forms = []
    for surface in vocabulary:
        ids = tokenizer.encode(surface, add_special_tokens=False)
        if not ids or tokenizer.unk_token_id in ids or tokenizer.decode(ids) != surface:
            raise UserError(f"the tokenizer cannot produce the vocabulary word {surface!r}: remove or respell it")
        group = word_of(surface)
        if group not in groups:
            groups.append(group)
        forms.append((groups.index(group), torch.tensor(ids)))
    return WordForms(groups, forms)


def occurrences(ids_BS: torch.Tensor, form: torch.Tensor) -> torch.Tensor:
    """Mask [B, S] of every token of every occurrence of the token sequence `form`."""
    length, seq = len(form), ids_BS.shape[1]
    if length > seq:
        return torch.zeros_like(ids_BS, dtype=torch.bool)
    starts = torch.ones(ids_BS.shape[0], seq - length + 1, dtype=torch.bool, device=ids_BS.device)
    for i, token in enumerate(form.tolist()):
        starts &= ids_BS[:, i : seq - length + 1 + i] == token
    mask = torch.zeros_like(ids_BS, dtype=torch.bool)
    for i in range(length):
        mask[:, i : seq - length + 1 + i] |= starts
    return mask


def widen(mask_BS: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Position q is in the window when a marked p has p - before <= q <= p + after."""
    padded = F.pad(mask_BS.float()[:, None], (after, before))
    return F.max_pool1d(padded, kernel_size=before + after + 1, stride=1)[:, 0] > 0


def set_masks(ids_BS: torch.Tensor, words: WordForms, window: tuple[int, int], keep_BS: torch.Tensor) -> torch.Tensor:
    """[B, S, 2 + |R|] float masks: D_R^W, D_¬R^W, then D_{r_j}^W for each word, positions outside keep_BS excluded."""
    words_BSW = torch.zeros(*ids_BS.shape, len(words.groups), dtype=torch.bool, device=ids_BS.device)
    for group, form in words.forms:
        words_BSW[..., group] |= occurrences(ids_BS, form.to(ids_BS.device))
    windows_BSW = torch.stack([widen(words_BSW[..., w], *window) for w in range(len(words.groups))], dim=-1)
    windows_BSW &= keep_BS[..., None]
    positive_BS = windows_BSW.any(-1)
    negative_BS = keep_BS & ~positive_BS
    return torch.cat([positive_BS[..., None], negative_BS[..., None], windows_BSW], dim=-1).float()


class ScoreSums(NamedTuple):
    sums_MF: torch.Tensor
    """Summed activations of every feature (or, for DiffMean, every hook dimension) over each set (rows as in
    set_masks)."""
    counts_M: torch.Tensor
    """Tokens in each set."""


def accumulate(feats_NF: torch.Tensor, masks_NM: torch.Tensor, sums: ScoreSums | None) -> ScoreSums:
    # float64 sums: 10M-token corpora would lose digits in float32 (the [sets, tokens] x [tokens, d_sae] product is
    # ~(|R| + 2) / (2 d_in) of the SAE encode's FLOPs, so its precision costs little even on a GPU)
    part = ScoreSums(masks_NM.T.double() @ feats_NF.double(), masks_NM.double().sum(0))
    return part if sums is None else ScoreSums(sums.sums_MF + part.sums_MF, sums.counts_M + part.counts_M)


def score_table(sums: ScoreSums, groups: list[str], alpha: float) -> pd.DataFrame:
    """Eq. 5 from the set sums: one row per feature, indexed by feature id, with the score and its parts."""
    counts = sums.counts_M.double()
    if counts[0] == 0:
        raise UserError("the scoring corpus has no occurrence of any vocabulary word: check the vocabulary "
                        "against the tokenizer and the corpus")
    for word, n in zip(groups, counts[2:].tolist(), strict=True):
        if n == 0:
            log.warning("vocabulary word %r never occurs in the scoring corpus: its mean is taken as 0", word)
    means_MF = sums.sums_MF.double() / counts.clamp(min=1)[:, None]
    pos_F, neg_F, words_WF = means_MF[0], means_MF[1], means_MF[2:]
    probs_WF = words_WF / (words_WF.sum(0) + EPS)
    entropy_F = -torch.special.xlogy(probs_WF, probs_WF).sum(0)
    entropy_F = entropy_F / math.log(len(groups)) if len(groups) > 1 else torch.ones_like(entropy_F)
    share_pos_F, share_neg_F = pos_F / (pos_F.sum() + EPS), neg_F / (neg_F.sum() + EPS)
    score_F = share_pos_F * entropy_F.clamp(min=0).pow(alpha) - share_neg_F
    table = pd.DataFrame({
        "reason_score": score_F.numpy(), "share_pos": share_pos_F.numpy(), "share_neg": share_neg_F.numpy(),
        "mean_pos": pos_F.numpy(), "mean_neg": neg_F.numpy(), "entropy": entropy_F.numpy(),
        **{f"mean_{word}": words_WF[w].numpy() for w, word in enumerate(groups)},
    })
    table.index.name = "feature"
    table["rank"] = table["reason_score"].rank(ascending=False, method="first").astype(np.int64)
    table.attrs.update({"tokens_pos": int(counts[0]), "tokens_neg": int(counts[1]),
                        "tokens_per_word": dict(zip(groups, map(int, counts[2:].tolist()), strict=True)),
                        "alpha": alpha})
    return table


def top_features(table: pd.DataFrame, q: float | None = None, top_k: int | None = None) -> list[int]:
    """F_R (Eq. 6): features whose score exceeds the q-quantile, or the top_k by score; best first."""
    if q is not None and not 0 < q < 1:
        raise UserError(f"score.q={q} must lie strictly between 0 and 1 (the paper: 0.997)")
    ranked = table.sort_values("reason_score", ascending=False)
    if top_k is not None:
        return ranked.index[:top_k].tolist()
    tau = table["reason_score"].quantile(q)
    return ranked.index[ranked["reason_score"] > tau].tolist()


class ScorePass(NamedTuple):
    table: pd.DataFrame
    """The score table (`reason_scores`)."""
    diffmean: DiffMean | None
    """The DiffMean steering vector over the same sets (None when not asked for)."""


def reason_scores(lm, sae, token_ids, vocabulary: Sequence[str], window: tuple[int, int] = (2, 3),
                  alpha: float = 0.7, ignore_token_ids: Sequence[int] = (), fold_decoder_norm: bool = False,
                  hook: str | None = None, batch_sequences: int = 8, progress: bool = False,
                  sink_positions: int = 0) -> pd.DataFrame:
    """ReasonScore of every SAE feature over `token_ids` [n_sequences, seq] (one LM pass over each token).

    `fold_decoder_norm` scales each feature's activation by its decoder norm first (the released code);
    `hook` defaults to the SAE's recorded hook; the first `sink_positions` of each sequence count in no set (the
    stages drop model.sink_positions, 1 by default: models/positions.py). Returns the score table indexed by feature id."""
    return score_pass(lm, sae, token_ids, vocabulary, window, alpha, ignore_token_ids, fold_decoder_norm, hook,
                      batch_sequences, progress, sink_positions, diffmean=False).table


@torch.inference_mode()
def score_pass(lm, sae, token_ids, vocabulary: Sequence[str], window: tuple[int, int] = (2, 3), alpha: float = 0.7,
               ignore_token_ids: Sequence[int] = (), fold_decoder_norm: bool = False, hook: str | None = None,
               batch_sequences: int = 8, progress: bool = False, sink_positions: int = 0,
               diffmean: bool = True) -> ScorePass:
    """`reason_scores`, and with `diffmean` the DiffMean vector (score/diffmean.py) from the same pass: the hook
    activations summed over the same two sets as the feature means (D_R^W, D_¬R^W, same kept tokens)."""
    import copy

    hook = hook or sae.hook_name(lm)
    words = tokenize_vocabulary(vocabulary, lm.tokenizer)
    if fold_decoder_norm:
        sae = copy.deepcopy(sae)
        sae.fold_decoder_norm()
    sae = sae.to(lm.device)
    sums = means = None
    for batch in lm.iter_activations(token_ids, hook, batch_sequences, ignore_token_ids, sink_positions,
                                     "ReasonScore" if progress else None):
        feats_BSF = sae.encode(batch.acts.float())
        masks_BSM = set_masks(batch.ids_BS, words, window, batch.keep_BS)
        sums = accumulate(feats_BSF.flatten(0, 1), masks_BSM.flatten(0, 1), sums)
        if diffmean:
            means = accumulate(batch.acts.flatten(0, 1), masks_BSM[..., :2].flatten(0, 1), means)  # [2, D] sums
    table = score_table(ScoreSums(sums.sums_MF.cpu(), sums.counts_M.cpu()), words.groups, alpha)
    return ScorePass(table, diff_mean(means.sums_MF, means.counts_M, hook) if diffmean else None)
