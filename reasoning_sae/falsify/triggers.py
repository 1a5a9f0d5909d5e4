"""A feature's trigger tokens: the distinct tokens at its top-activating positions, highest activation first, as token
ids (a trigger is inserted as the exact id it had, never re-tokenised from its text)."""

from collections.abc import Iterable, Sequence

import numpy as np
import torch


def distinct(tokens: Iterable[int], k: int) -> list[int]:
    """The first `k` distinct tokens, in order."""
    seen: list[int] = []
    for token in tokens:
        if token not in seen:
            seen.append(token)
            if len(seen) == k:
                break
    return seen


def from_contexts(contexts: Sequence[dict], token_ids_NS: np.ndarray, k: int) -> list[int]:
    """From the interpret stage's top contexts of one feature: the token id at each context's (sequence, position)
    of the scoring corpus `token_ids_NS`, by decreasing activation."""
    ordered = sorted(contexts, key=lambda c: -float(c["activation"]))
    return distinct((int(token_ids_NS[c["sequence"], c["position"]]) for c in ordered), k)


def from_activations(feats_NG: torch.Tensor, ids_N: torch.Tensor, k: int) -> list[list[int]]:
    """For each feature (column of `feats_NG`, activations at the tokens `ids_N`): the distinct tokens at its positive
    activations, by decreasing activation (ties: the earlier position first); [] for a feature that never fires."""
    triggers = []
    for acts_N in feats_NG.T:
        fired = torch.nonzero(acts_N > 0).flatten()
        order = torch.sort(acts_N[fired], descending=True, stable=True).indices
        triggers.append(distinct(ids_N[fired[order]].tolist(), k))
    return triggers
