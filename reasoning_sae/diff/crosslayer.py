"""Cross-layer matching (v2 App. D.1, Table 3): the main SAE's F_R and random features matched one-to-one to the SAE
of each other layer (matching.assign: the Hungarian method on decoder dot products as in Eq. 8, or on cosines),
each pair scored by the cosine of its activations over the scoring corpus (Eq. 9) and classed same / maybe / diff."""

from typing import NamedTuple

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from reasoning_sae.artifacts import read_tokens
from reasoning_sae.diff import matching
from reasoning_sae.diff.activations import PairSums, pair_sums
from reasoning_sae.diff.config import run_model
from reasoning_sae.models import resid_post
from reasoning_sae.sae import SparseAutoencoder

MATCH_COLUMNS = ["layer", "set", "feature", "partner", "decoder_cosine", "matching_score", "class"]
COUNT_COLUMNS = ["layer_from", "layer", "set", "n", "same", "maybe", "diff", "share_same", "share_maybe", "share_diff",
                 "mean_matching_score", "mean_decoder_cosine"]
SETS = ("reasoning", "random")


class CrossLayer(NamedTuple):
    matches: pd.DataFrame
    """One row per matched feature and layer (MATCH_COLUMNS)."""
    counts: pd.DataFrame
    """One row per layer and set: class counts, shares and means (COUNT_COLUMNS)."""
    tokens: int
    """Tokens the matching scores sum over."""


def no_layers() -> CrossLayer:
    return CrossLayer(pd.DataFrame(columns=MATCH_COLUMNS), pd.DataFrame(columns=COUNT_COLUMNS), 0)


def set_counts(main_layer: int, layer: int, set_G: np.ndarray, classes_G: np.ndarray, scores_G: np.ndarray,
               cosine_G: np.ndarray) -> list[dict]:
    """Per set (reasoning, random): the class counts and shares and the mean matching score and decoder cosine."""
    rows = []
    for name in SETS:
        mask_G = set_G == name
        c = matching.class_counts(classes_G[mask_G])
        rows.append({"layer_from": main_layer, "layer": layer, "set": name, "n": c.total,
                     **c._asdict(), **{f"share_{k}": v for k, v in c.shares().items()},
                     "mean_matching_score": float(scores_G[mask_G].mean()) if mask_G.any() else float("nan"),
                     "mean_decoder_cosine": float(cosine_G[mask_G].mean()) if mask_G.any() else float("nan")})
    return rows


def layer_tables(cfg: DictConfig, main_layer: int, layer: int, a: matching.Assignment, sums: PairSums,
                 set_G: np.ndarray) -> tuple[pd.DataFrame, list[dict]]:
    """One layer's matches (MATCH_COLUMNS) and per-set counts, from its assignment and pair sums."""
    cl = cfg.diff.crosslayer
    scores_G = matching.matching_scores(sums.dot, sums.sq_a, sums.sq_b)
    classes_G = matching.classify(scores_G, cl.same, cl.maybe)
    matches = pd.DataFrame({"layer": layer, "set": set_G, "feature": a.features, "partner": a.partners,
                            "decoder_cosine": a.cosine, "matching_score": scores_G, "class": classes_G})
    return matches, set_counts(main_layer, layer, set_G, classes_G, scores_G, a.cosine)


def crosslayer(cfg: DictConfig, lm, main: SparseAutoencoder, main_layer: int,
               layer_saes: dict[int, SparseAutoencoder], f_r: list[int], rand: list[int]) -> CrossLayer:
    """F_R and `rand` of the main SAE matched to each layer's SAE, scored over diff.crosslayer.sequences scoring
    sequences in one LM pass."""
    cl = cfg.diff.crosslayer
    features = [*f_r, *rand]
    set_G = np.array([SETS[0]] * len(f_r) + [SETS[1]] * len(rand))
    assigned = {layer: matching.assign(main, sae, features, full=cl.assignment == "full", similarity=cl.similarity,
                                       chunk=cfg.diff.chunk)
                for layer, sae in layer_saes.items()}
    mc = run_model(cfg)
    sums = pair_sums(lm, resid_post(main_layer), main.to(lm.device), features,
                     {resid_post(layer): (sae.to(lm.device), assigned[layer].partners)
                      for layer, sae in layer_saes.items()},
                     read_tokens(cfg, "score", cl.sequences), mc.ignore_token_ids if cl.ignore_special_tokens else (),
                     cl.batch_sequences, progress=True, sink_positions=mc.sink_positions)
    matches, counts, tokens = [], [], 0
    for layer, a in assigned.items():
        s = sums[resid_post(layer)]
        tokens = s.tokens
        layer_matches, layer_counts = layer_tables(cfg, main_layer, layer, a, s, set_G)
        matches.append(layer_matches)
        counts += layer_counts
    return CrossLayer(pd.concat(matches)[MATCH_COLUMNS], pd.DataFrame(counts)[COUNT_COLUMNS], tokens)
