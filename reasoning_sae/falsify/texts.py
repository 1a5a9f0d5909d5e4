"""The texts of the falsification, drawn with a seeded numpy Generator, as token ids (a trigger goes in as the exact id
it had at its top activation):

- injected: held-out chat sequences with trigger tokens inserted at random word starts, windows apart, the
  sequence cut back to its length (Ma et al.'s `intersperse` strategy, scripts/run_token_injection_experiment.py
  `inject_tokens_into_text`, there on words of a string);
- ablated: reasoning sequences in which the `context` tokens before a trigger occurrence and the window after it are
  replaced by a neutral span of held-out chat of the same length, the trigger kept in place (ours).

Several features share one injected sequence: each reads the windows around its own triggers only."""

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from reasoning_sae.errors import UserError


class Texts(NamedTuple):
    ids_TS: np.ndarray
    """The texts [texts, seq] (int64)."""
    text_N: np.ndarray
    """Per site: the text (row of ids_TS) the trigger is read in."""
    pos_N: np.ndarray
    """Per site: the trigger's position there."""
    token_N: np.ndarray
    """Per site: the trigger token id."""
    origin_N: np.ndarray
    """Per site: the row of the source sequences (chat or reasoning) the text was made from."""
    origin_pos_N: np.ndarray
    """Per site: the position in that row whose window the site replaces (injection: the token the trigger was
    inserted before; ablation: the trigger itself)."""


def _texts(ids: list[np.ndarray], sites: list[tuple[int, int, int, int, int]], seq: int) -> Texts:
    arrays = np.array(sites, dtype=np.int64).reshape(-1, 5).T
    ids_TS = np.stack(ids) if ids else np.zeros((0, seq), dtype=np.int64)
    return Texts(ids_TS.astype(np.int64), *arrays)


def allocate(triggers: Mapping[int, Sequence[int]], per_feature: int,
             cap: Mapping[int, int] | None = None) -> dict[int, int]:
    """Sites per trigger token such that each feature has at least `per_feature` sites of its own triggers (a site of a
    token that several features share counts for each): a feature's least-used trigger gets the next site. `cap`
    bounds a token's sites (its occurrences); a feature whose triggers run out keeps fewer."""
    counts: dict[int, int] = {}
    for tokens in triggers.values():
        usable = [t for t in tokens if cap is None or cap.get(t, 0) > counts.get(t, 0)]
        while usable and sum(counts.get(t, 0) for t in tokens) < per_feature:
            token = min(usable, key=lambda t: counts.get(t, 0))  # ties: the higher-activating trigger
            counts[token] = counts.get(token, 0) + 1
            if cap is not None and counts[token] >= cap[token]:
                usable.remove(token)
    return counts


def word_starts(tokenizer) -> np.ndarray:
    """[V] bool: the tokens that begin a word (a leading space or newline: byte-level BPE's Ġ / Ċ, SentencePiece's
    ▁), the insertion points, so that an inserted trigger never splits a word."""
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return np.array([bool(p) and p[0] in "Ġ▁Ċ \n" for p in pieces], dtype=bool)


def check_room(seq: int, injections: int, context: int, window: tuple[int, int], sink_positions: int) -> None:
    """Sequences of `seq` tokens fit `injections` insertions and an ablated span (`context` + 1 + the window after)."""
    _check_injections(seq, injections, window, sink_positions)
    _check_ablation(seq, context, window, sink_positions)


def _check_injections(seq: int, injections: int, window: tuple[int, int], sink_positions: int) -> None:
    before, after = window
    if seq - 1 - after - injections < max(sink_positions + before, 1):
        raise UserError(f"sequences of {seq} tokens leave no room to insert {injections} tokens with windows "
                        f"{list(window)}: lower falsify.injections or raise data.context_size")


def _check_ablation(seq: int, context: int, window: tuple[int, int], sink_positions: int) -> None:
    before, after = window
    if context < before or sink_positions + context + 1 + after > seq:
        raise UserError(f"falsify.ablation={context} must cover the window before a trigger ({before}, score.window) "
                        f"and fit a {seq}-token sequence with its window: set it between {before} and "
                        f"{seq - 1 - after - sink_positions}")


def inject(chat_HS: np.ndarray, tokens: Sequence[int], per_text: int, window: tuple[int, int], sink_positions: int,
           rng: np.random.Generator, insertable_V: np.ndarray | None = None) -> Texts:
    """Chat sequences (taken in turn, as often as needed) with `tokens` inserted in order, up to `per_text` per
    sequence, before random word starts (`insertable_V`; any token where a sequence has none) at least a window
    apart, each sequence cut back to its length."""
    seq = chat_HS.shape[1]
    before, after = window
    _check_injections(seq, per_text, window, sink_positions)
    gap = before + after + 1  # windows of neighbouring insertions never overlap
    candidates = np.arange(max(sink_positions + before, 1), seq - after - per_text)
    queue, ids, sites = list(tokens), [], []
    while queue:
        origin = len(ids) % len(chat_HS)
        row = chat_HS[origin]
        where = candidates[insertable_V[row[candidates]]] if insertable_V is not None else candidates
        picked: list[int] = []
        for p in rng.permutation(where if len(where) else candidates).tolist():
            if all(abs(p - q) >= gap for q in picked):
                picked.append(p)
                if len(picked) == min(per_text, len(queue)):
                    break
        picked.sort()
        placed, queue = queue[: len(picked)], queue[len(picked):]
        sites += [(len(ids), p + i, t, origin, p) for i, (p, t) in enumerate(zip(picked, placed, strict=True))]
        ids.append(np.insert(row, picked, placed)[:seq])
    return _texts(ids, sites, seq)


def ablate(reasoning_RS: np.ndarray, keep_RS: np.ndarray, triggers: Mapping[int, Sequence[int]], per_feature: int,
           context: int, window: tuple[int, int], chat_HS: np.ndarray, sink_positions: int,
           rng: np.random.Generator) -> Texts:
    """Copies of the reasoning sequences that hold trigger occurrences (at least `per_feature` per feature where the
    sequences have them), each with the `context` tokens before the trigger and the window after it replaced by a
    random span of chat of the same length; the spans of one copy never overlap."""
    seq = reasoning_RS.shape[1]
    before, after = window
    _check_ablation(seq, context, window, sink_positions)
    span = context + 1 + after
    tokens = list(dict.fromkeys(t for ts in triggers.values() for t in ts))
    found = np.isin(reasoning_RS, tokens) & keep_RS
    found[:, : sink_positions + context] = False
    found[:, seq - after:] = False
    rows_W, pos_W = np.nonzero(found)
    where = {t: np.flatnonzero(reasoning_RS[rows_W, pos_W] == t) for t in tokens}
    counts = allocate(triggers, per_feature, cap={t: len(w) for t, w in where.items()})
    taken: dict[int, list[int]] = {}
    chosen = []
    for token, count in counts.items():
        got = 0
        for i in rng.permutation(where[token]).tolist():
            r, p = int(rows_W[i]), int(pos_W[i])
            if any(abs(p - q) < span for q in taken.get(r, [])):
                continue
            taken.setdefault(r, []).append(p)
            chosen.append((r, p, token))
            got += 1
            if got == count:
                break
    chosen.sort()
    rows = sorted(taken)
    ids = [reasoning_RS[r].copy() for r in rows]
    sites = []
    for r, p, token in chosen:
        h, start = rng.integers(len(chat_HS)), rng.integers(sink_positions, seq - span + 1)
        neutral = chat_HS[h, start : start + span].copy()
        neutral[context] = token
        ids[rows.index(r)][p - context : p + after + 1] = neutral
        sites.append((rows.index(r), p, token, r, p))
    return _texts(ids, sites, seq)
