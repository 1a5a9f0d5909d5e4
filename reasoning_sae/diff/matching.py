"""Feature matching between SAEs (paper Sec. 4.4 and App. D.1), from decoder rows and from activations.

Choices the paper leaves open (v2 Sec. 4.4, App. D.1), made here:
- Presence compares *decoder* rows (the paper: "cosine similarity between feature vectors", after Bricken et al.
  2024, whose feature vectors are decoder directions). Cosine >= threshold counts as present (the paper: >= 0.7).
- Cross-layer assignment maximises the summed similarity of matched decoder rows, `similarity`: `dot` (default)
  is Eq. 8 as v2 writes it, argmax_P <P, W_dec^A^T W_dec^B>_F on the raw rows (App. D.1; no code released for
  it); `cosine` divides out the row norms first. The paper's decoders are not unit norm (normalize_sae_decoder
  false, as released), so `dot` favours large-norm partners; on unit-norm decoders the two are the same. Eq. 8's
  argmin_P sum_i ||W_A,i - P W_B,i||^2 equals the dot form for a full permutation only; for the restricted problem
  below the dot form is the one solved. Whatever the assignment, the reported decoder cosine is a cosine.
- For a large dictionary the full d_sae x d_sae permutation is out of reach (65,536^2 costs); the assignment is
  solved for the requested features only (F_R and the random set together, so no two of them share a partner)
  against every row of the other SAE: a one-to-one matching on the [n_features, d_sae] similarity matrix, filled
  in blocks of `chunk` rows of the other SAE.
  `full=True` solves the whole permutation instead (small SAEs; tested equal to brute force).
- Matching score (Eq. 9) of a feature that never fires on the corpus, or whose partner never fires, is 0 (diff).
- Classes as Table 3: same if MS > same (0.7), maybe if maybe (0.5) < MS <= same, diff otherwise.
- Random features: drawn uniformly without replacement from the features outside F_R, seeded.
"""

from typing import NamedTuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from reasoning_sae.errors import UserError

CLASSES = ("same", "maybe", "diff")
SIMILARITIES = ("dot", "cosine")


class Presence(NamedTuple):
    features: np.ndarray
    """Feature ids of the final SAE that were tested [n]."""
    best_cosine: np.ndarray
    """Largest decoder cosine of each with any row of the stage's SAE [n]."""
    present: np.ndarray
    """best_cosine >= threshold [n]."""
    threshold: float

    @property
    def count(self) -> int:
        return int(self.present.sum())

    @property
    def share(self) -> float:
        """Share of the tested features present (nan for an empty set)."""
        return float(self.present.mean()) if len(self.present) else float("nan")


class Assignment(NamedTuple):
    features: np.ndarray
    """Feature ids of SAE A [n]."""
    partners: np.ndarray
    """Matched feature ids of SAE B [n] (distinct)."""
    cosine: np.ndarray
    """Decoder cosine of each matched pair [n]."""


class MatchCounts(NamedTuple):
    same: int
    maybe: int
    diff: int

    @property
    def total(self) -> int:
        return self.same + self.maybe + self.diff

    def shares(self) -> dict[str, float]:
        """Class -> share of the features (nan for an empty set)."""
        n = self.total
        return {c: (getattr(self, c) / n if n else float("nan")) for c in CLASSES}


def decoder(sae_or_dec) -> torch.Tensor:
    """The decoder rows [d_sae, d_in] of an SAE (or the rows themselves), float32 on the CPU."""
    dec_FD = sae_or_dec.W_dec if hasattr(sae_or_dec, "W_dec") else sae_or_dec
    return torch.as_tensor(dec_FD).detach().float().cpu()


def unit_rows(dec_FD: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit norm (zero rows stay zero, so their cosine with anything is 0)."""
    return dec_FD / dec_FD.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def cosine_GF(dec_GD: torch.Tensor, dec_FD: torch.Tensor) -> torch.Tensor:
    """Cosine of every row of dec_GD with every row of dec_FD [G, F] (materialised: keep G * F small)."""
    return unit_rows(dec_GD) @ unit_rows(dec_FD).T


def max_cosine(dec_GD: torch.Tensor, dec_FD: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Largest cosine of each row of dec_GD with any row of dec_FD [G], in blocks of chunk x chunk."""
    check_chunk(chunk)
    unit_GD, unit_FD = unit_rows(dec_GD), unit_rows(dec_FD)
    best_G = torch.full((len(unit_GD),), -torch.inf)
    for n0 in range(0, len(unit_GD), chunk):
        for f0 in range(0, len(unit_FD), chunk):
            block_nf = unit_GD[n0 : n0 + chunk] @ unit_FD[f0 : f0 + chunk].T
            best_G[n0 : n0 + chunk] = torch.maximum(best_G[n0 : n0 + chunk], block_nf.max(dim=1).values)
    return best_G


def check_threshold(threshold: float, name: str = "diff.threshold") -> None:
    if not 0 < threshold < 1:
        raise UserError(f"{name}={threshold} must lie strictly between 0 and 1 (the paper: 0.7)")


def presence(final_sae, stage_sae, features, threshold: float = 0.7, chunk: int = 4096) -> Presence:
    """Which `features` of the final SAE are present in a stage's SAE: decoder cosine >= threshold with any row."""
    check_threshold(threshold)
    dec_final, dec_stage = decoder(final_sae), decoder(stage_sae)
    if dec_final.shape[1] != dec_stage.shape[1]:
        raise UserError(f"the SAEs read different widths ({dec_final.shape[1]} vs {dec_stage.shape[1]}): "
                        f"compare SAEs of the same model family")
    ids = check_features(features, len(dec_final))
    best_G = max_cosine(dec_final[ids], dec_stage, chunk).numpy()
    return Presence(ids, best_G, best_G >= threshold, threshold)


def check_features(features, d_sae: int) -> np.ndarray:
    """Feature ids as an int array, each in [0, d_sae)."""
    ids = np.asarray(list(features), dtype=np.int64)
    bad = ids[(ids < 0) | (ids >= d_sae)]
    if len(bad):
        raise UserError(f"feature id {int(bad[0])} is out of range: the SAE has {d_sae} features (0-{d_sae - 1})")
    return ids


def check_similarity(similarity: str, name: str = "diff.crosslayer.similarity") -> None:
    if similarity not in SIMILARITIES:
        raise UserError(f"unknown {name} {similarity!r}: use dot (raw decoder dot products, Eq. 8) or cosine "
                        f"(decoder cosines)")


def check_chunk(chunk: int) -> None:
    if chunk < 1:
        raise UserError(f"chunk={chunk} must be a positive number of decoder rows")


def similarity_GF(dec_GD: torch.Tensor, dec_FD: torch.Tensor, similarity: str = "dot",
                  chunk: int = 4096) -> np.ndarray:
    """Dot product or cosine of every row of dec_GD with every row of dec_FD [G, F] (float32), filled in blocks of
    chunk rows of dec_FD (no unit-norm copy of the whole of dec_FD; the result itself is G * F)."""
    check_similarity(similarity)
    check_chunk(chunk)
    rows_GD = unit_rows(dec_GD) if similarity == "cosine" else dec_GD
    sim_GF = np.empty((len(dec_GD), len(dec_FD)), dtype=np.float32)
    for f0 in range(0, len(dec_FD), chunk):
        block_FD = dec_FD[f0 : f0 + chunk]
        block_FD = unit_rows(block_FD) if similarity == "cosine" else block_FD
        sim_GF[:, f0 : f0 + chunk] = (rows_GD @ block_FD.T).numpy()
    return sim_GF


def pair_cosine_G(dec_GD: torch.Tensor, partners_GD: torch.Tensor) -> np.ndarray:
    """Cosine of each row of dec_GD with the same row of partners_GD [G] (zero rows: 0)."""
    return (unit_rows(dec_GD).double() * unit_rows(partners_GD).double()).sum(dim=-1).numpy()


def assign(sae_a, sae_b, features, full: bool = False, similarity: str = "dot", chunk: int = 4096) -> Assignment:
    """One-to-one decoder matching of `features` of SAE A to features of SAE B, maximising the summed `similarity`
    (dot: Eq. 8 on raw rows; cosine) by the Hungarian method (scipy's linear_sum_assignment): on
    [n_features, d_sae_B], or the full permutation. The reported `cosine` of each pair is a cosine either way."""
    check_similarity(similarity)
    dec_a, dec_b = decoder(sae_a), decoder(sae_b)
    ids = check_features(features, len(dec_a))
    if len(set(ids.tolist())) != len(ids):
        raise UserError("the features to match contain duplicates: give each feature id once")
    if len(ids) > len(dec_b):
        raise UserError(f"{len(ids)} features cannot be matched one-to-one into {len(dec_b)}: match fewer")
    if full:
        if len(dec_a) > len(dec_b):
            raise UserError(f"a full permutation needs d_sae_A <= d_sae_B, got {len(dec_a)} > {len(dec_b)}")
        rows, cols = linear_sum_assignment(similarity_GF(dec_a, dec_b, similarity, chunk), maximize=True)
        partner = np.full(len(dec_a), -1, dtype=np.int64)
        partner[rows] = cols
        partners = partner[ids]
    else:
        sim_GF = similarity_GF(dec_a[ids], dec_b, similarity, chunk)
        rows, cols = linear_sum_assignment(sim_GF, maximize=True)  # every row is assigned (n <= d_sae_B)
        partners = np.empty(len(ids), dtype=np.int64)
        partners[rows] = cols
    return Assignment(ids, partners, pair_cosine_G(dec_a[ids], dec_b[partners]))


def matching_scores(dot_G, sq_a_G, sq_b_G) -> np.ndarray:
    """Eq. 9: sum f_i f_j / sqrt(sum f_i^2 * sum f_j^2) from the three sums [n]; 0 where either never fires."""
    dot_G, sq_a_G, sq_b_G = (np.asarray(x, dtype=np.float64) for x in (dot_G, sq_a_G, sq_b_G))
    denom_G = np.sqrt(sq_a_G * sq_b_G)
    return np.divide(dot_G, denom_G, out=np.zeros_like(dot_G), where=denom_G > 0)


def check_classes(same: float = 0.7, maybe: float = 0.5) -> None:
    if not 0 < maybe < same < 1:
        raise UserError(f"matching-score bounds maybe={maybe}, same={same} must satisfy 0 < maybe < same < 1 "
                        f"(the paper: 0.5, 0.7)")


def classify(scores_G, same: float = 0.7, maybe: float = 0.5) -> np.ndarray:
    """Class of each matching score: same (> same), maybe (maybe < MS <= same), diff (<= maybe) [n] (str)."""
    check_classes(same, maybe)
    scores_G = np.asarray(scores_G, dtype=np.float64)
    return np.where(scores_G > same, "same", np.where(scores_G > maybe, "maybe", "diff"))


def class_counts(classes_G) -> MatchCounts:
    classes_G = np.asarray(classes_G)
    return MatchCounts(*(int((classes_G == c).sum()) for c in CLASSES))


def random_features(d_sae: int, n: int, seed: int, exclude=()) -> list[int]:
    """n feature ids drawn uniformly without replacement from [0, d_sae) minus `exclude`, sorted (seeded)."""
    if n < 0:
        raise UserError(f"diff.random_features={n} must be >= 0")
    pool = np.setdiff1d(np.arange(d_sae), np.asarray(list(exclude), dtype=np.int64))
    if n > len(pool):
        raise UserError(f"diff.random_features={n} exceeds the {len(pool)} features outside F_R: ask for fewer")
    return sorted(np.random.default_rng(seed).choice(pool, size=n, replace=False).tolist())
