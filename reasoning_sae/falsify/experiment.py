"""The falsification of a set of features, end to end: two LM passes that read each text once.

1. The reasoning sequences: each feature's mean over ReasonScore's windows around the vocabulary words (the
   reasoning level it is compared with), and the trigger tokens of the features that come without them (the
   random controls: those of F_R come from the interpret stage's contexts).
2. The held-out chat sequences, the same with the triggers inserted, and the ablated reasoning sequences, all in
   one batched pass: every feature's window means at every site, from one encode of the chosen features.

No pass is per feature: the injected texts carry the triggers of many features at once, windows apart."""

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from reasoning_sae.falsify.passes import encoded, feature_encoder, window_means
from reasoning_sae.falsify.texts import Texts, ablate, allocate, check_room, inject, word_starts
from reasoning_sae.falsify.triggers import from_activations
from reasoning_sae.falsify.verdict import FeatureResult, injection_test, ratio, verdict
from reasoning_sae.score.reasonscore import set_masks, tokenize_vocabulary


class Settings(NamedTuple):
    triggers: int = 3
    """Trigger tokens per feature."""
    sites: int = 6
    """Injected (and ablated) sites per feature, at least (a token shared by features counts for each)."""
    injections: int = 16
    """Triggers inserted per chat sequence, at least a window apart."""
    ablation: int = 16
    """Tokens before a trigger replaced by neutral text (with the window after it)."""
    window: tuple[int, int] = (2, 3)
    """Tokens before and after a site that its mean covers (ReasonScore's window)."""
    share: float = 0.5
    effect: float = 0.8
    alpha: float = 0.01
    batch_sequences: int = 8
    seed: int = 0
    controls: int | None = None
    """Of the features that come without triggers, test the first `controls` that fire in the reasoning sequences
    (None: all of them)."""


class Falsification(NamedTuple):
    results: list[FeatureResult]
    """One per feature, in the order given."""
    tokens: dict[str, int]
    """Tokens read by the LM: reasoning, chat, injected and ablated texts."""
    injected: Texts
    ablated: Texts


def random_controls(table: pd.DataFrame, exclude: Sequence[int], n: int, seed: int) -> list[int]:
    """`n` features outside `exclude` in a random order (seeded), drawn among those that fire on the scoring corpus (a
    positive mean inside or outside the reasoning windows of the score table; any feature when the table lacks those
    columns); fewer when fewer fire."""
    alive = table.index
    if {"mean_pos", "mean_neg"} <= set(table.columns):
        alive = table.index[(table["mean_pos"] + table["mean_neg"]) > 0]
    pool = np.array(sorted(set(map(int, alive)) - set(map(int, exclude))), dtype=np.int64)
    return [int(f) for f in np.random.default_rng(seed).choice(pool, min(n, len(pool)), replace=False)]


def _site_values(lm, encode, ids_TS: np.ndarray, row_N: np.ndarray, pos_N: np.ndarray, hook: str,
                 settings: Settings, ignore_token_ids, sink_positions: int, progress: str | None) -> torch.Tensor:
    """[N, G] window means at the sites (row of ids_TS, position), from one pass over ids_TS."""
    values_NG = None
    row_t, pos_t = torch.as_tensor(row_N), torch.as_tensor(pos_N)
    for start, ids_BS, keep_BS, feats_BSG in encoded(lm, encode, ids_TS, hook, settings.batch_sequences,
                                                    ignore_token_ids, sink_positions, progress):
        if values_NG is None:
            values_NG = torch.full((len(row_N), feats_BSG.shape[-1]), torch.nan)
        here = torch.nonzero((row_t >= start) & (row_t < start + len(ids_BS))).flatten()
        rows = (row_t[here] - start).to(feats_BSG.device)
        means = window_means(feats_BSG, keep_BS, rows, pos_t[here].to(feats_BSG.device), settings.window)
        values_NG[here] = means.cpu()
    return values_NG


def _mean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


@torch.inference_mode()
def falsify(lm, sae, reasoning_RS: np.ndarray, chat_HS: np.ndarray, groups: Mapping[int, str],
            triggers: Mapping[int, Sequence[int]], vocabulary: Sequence[str], settings: Settings = Settings(),
            ignore_token_ids: Sequence[int] = (), sink_positions: int = 0, hook: str | None = None,
            progress: bool = False) -> Falsification:
    """Each feature of `groups` (feature -> group name) tested: its triggers (`triggers[feature]`, else the tokens at
    its top activations in `reasoning_RS`; see Settings.controls) inserted into `chat_HS` and ablated in
    `reasoning_RS`."""
    hook = hook or sae.hook_name(lm)
    candidates = list(groups)
    reasoning_RS, chat_HS = np.asarray(reasoning_RS, dtype=np.int64), np.asarray(chat_HS, dtype=np.int64)
    check_room(reasoning_RS.shape[1], settings.injections, settings.ablation, settings.window, sink_positions)
    sae = sae.to(lm.device)
    encode = feature_encoder(sae, candidates)
    words = tokenize_vocabulary(vocabulary, lm.tokenizer)
    rng = np.random.default_rng(settings.seed)

    feats, keeps, windows = [], [], []
    for _, ids_BS, keep_BS, feats_BSG in encoded(lm, encode, reasoning_RS, hook, settings.batch_sequences,
                                                 ignore_token_ids, sink_positions,
                                                 "falsify: reasoning" if progress else None):
        feats.append(feats_BSG.float().cpu())
        keeps.append(keep_BS.cpu())
        windows.append(set_masks(ids_BS, words, settings.window, keep_BS)[..., 0].cpu() > 0)
    feats_RSG, keep_RS, positive_RS = torch.cat(feats), torch.cat(keeps), torch.cat(windows)
    reasoning_G = (feats_RSG * positive_RS[..., None]).sum((0, 1)).double() / max(int(positive_RS.sum()), 1)
    found = from_activations(feats_RSG[keep_RS], torch.as_tensor(reasoning_RS)[keep_RS], settings.triggers)
    trig = {f: [int(t) for t in triggers[f]][: settings.triggers] if f in triggers else found[g]
            for g, f in enumerate(candidates)}
    fired = [f for f in candidates if f not in triggers and trig[f]]
    dropped = set(fired[settings.controls:]) if settings.controls is not None else set()
    features = [f for f in candidates if f in triggers or settings.controls is None or trig[f] and f not in dropped]
    columns = [candidates.index(f) for f in features]
    feats_RSG, reasoning_G = feats_RSG[..., columns], reasoning_G[columns]
    encode = feature_encoder(sae, features)
    testable = {f: trig[f] for f in features if trig[f]}

    counts = allocate(testable, settings.sites)
    tokens = rng.permutation([t for t, c in counts.items() for _ in range(c)]).tolist()
    injected = inject(chat_HS, tokens, settings.injections, settings.window, sink_positions, rng,
                      word_starts(lm.tokenizer))
    ablated = ablate(reasoning_RS, keep_RS.numpy(), testable, settings.sites, settings.ablation, settings.window,
                     chat_HS, sink_positions, rng)
    texts = np.concatenate([chat_HS, injected.ids_TS, ablated.ids_TS])
    first_injected, first_ablated = len(chat_HS), len(chat_HS) + len(injected.ids_TS)
    rows = np.concatenate([injected.origin_N, first_injected + injected.text_N, first_ablated + ablated.text_N])
    positions = np.concatenate([injected.origin_pos_N, injected.pos_N, ablated.pos_N])
    values_NG = _site_values(lm, encode, texts, rows, positions, hook, settings, ignore_token_ids, sink_positions,
                             "falsify: chat, injected, ablated" if progress else None).numpy()
    n_inj = len(injected.pos_N)
    baseline_NG, injected_NG, ablated_NG = values_NG[:n_inj], values_NG[n_inj:2 * n_inj], values_NG[2 * n_inj:]
    context_NG = window_means(feats_RSG, keep_RS, torch.as_tensor(ablated.origin_N),
                              torch.as_tensor(ablated.origin_pos_N), settings.window).numpy()

    results = []
    for g, feature in enumerate(features):
        mine_inj, mine_abl = np.isin(injected.token_N, trig[feature]), np.isin(ablated.token_N, trig[feature])
        inj, base = injected_NG[mine_inj, g], baseline_NG[:, g]
        d, p = injection_test(inj, base)
        inj_mean, reasoning_mean = _mean(inj), float(reasoning_G[g])
        results.append(FeatureResult(
            feature=int(feature), group=groups[feature], triggers=tuple(trig[feature]), reasoning_mean=reasoning_mean,
            baseline_mean=_mean(base), injected_mean=inj_mean, context_mean=_mean(context_NG[mine_abl, g]),
            ablated_mean=_mean(ablated_NG[mine_abl, g]), ratio=ratio(inj_mean, reasoning_mean), cohens_d=d,
            p_value=p, injected_sites=int(mine_inj.sum()), ablated_sites=int(mine_abl.sum()),
            verdict=verdict(d, p, inj_mean, reasoning_mean, int(mine_inj.sum()), settings.share, settings.effect,
                            settings.alpha)))
    tokens_read = {"reasoning": reasoning_RS.size, "chat": chat_HS.size, "injected": injected.ids_TS.size,
                   "ablated": ablated.ids_TS.size}
    return Falsification(results, {k: int(v) for k, v in tokens_read.items()}, injected, ablated)
