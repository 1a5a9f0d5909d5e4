import itertools
import math

import numpy as np
import pytest
import torch

from reasoning_sae import UserError
from reasoning_sae.diff import matching
from reasoning_sae.diff.activations import encode_features, pair_sums
from reasoning_sae.models.lm import LanguageModel
from reasoning_sae.sae import SAEConfig, SparseAutoencoder, initialize
from tests.helpers import identity_sae


def test_identical_rows_are_present_and_orthogonal_rows_absent():
    final_FD = torch.eye(4)[:2] * torch.tensor([[3.0], [0.5]])  # norms do not matter, directions do
    stage_FD = torch.stack([torch.eye(4)[0] * 7, torch.eye(4)[2], torch.eye(4)[3]])
    p = matching.presence(final_FD, stage_FD, [0, 1])
    np.testing.assert_allclose(p.best_cosine, [1.0, 0.0], atol=1e-6)
    assert p.present.tolist() == [True, False] and p.count == 1 and p.share == 0.5


def test_threshold_boundary_counts_as_present():
    final_FD = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    stage_FD = torch.tensor([[1.0, 1.0, 1.0, 1.0], [-1.0, 0.0, 0.0, 0.0]])  # cosines exactly 0.5 and -1
    assert matching.presence(final_FD, stage_FD, [0], threshold=0.5).present.tolist() == [True]
    assert matching.presence(final_FD, stage_FD, [0], threshold=0.5 + 1e-6).present.tolist() == [False]
    tilted_FD = torch.tensor([[0.7, math.sqrt(1 - 0.49), 0.0, 0.0]])
    assert matching.presence(final_FD, tilted_FD, [0], threshold=0.7 - 1e-6).present.tolist() == [True]
    assert matching.presence(final_FD, tilted_FD, [0], threshold=0.7 + 1e-6).present.tolist() == [False]


def test_presence_takes_saes_and_checks_its_input():
    a = initialize(SparseAutoencoder(SAEConfig(d_in=8, d_sae=16)), "fixed", generator=torch.Generator().manual_seed(0))
    assert matching.presence(a, a, range(16)).share == 1.0
    for bad in (0, 1, 1.5, -0.2):
        with pytest.raises(UserError, match="strictly between 0 and 1"):
            matching.presence(a, a, [0], threshold=bad)
    with pytest.raises(UserError, match="feature id 16 is out of range"):
        matching.presence(a, a, [16])
    with pytest.raises(UserError, match="different widths"):
        matching.presence(a, torch.randn(4, 9), [0])


def test_chunked_max_cosine_equals_the_full_matrix():
    g = torch.Generator().manual_seed(1)
    a_ND, b_FD = torch.randn(50, 16, generator=g), torch.randn(70, 16, generator=g)
    full = matching.cosine_GF(a_ND, b_FD).max(dim=1).values
    for chunk in (1, 7, 64, 10_000):
        torch.testing.assert_close(matching.max_cosine(a_ND, b_FD, chunk=chunk), full, atol=1e-6, rtol=0)
    with pytest.raises(UserError, match="positive"):
        matching.max_cosine(a_ND, b_FD, chunk=0)


def _brute_force(cos_AB: np.ndarray, rows) -> tuple[float, tuple]:
    """The best injective map of `rows` into the columns, by enumeration."""
    return max((sum(cos_AB[r, c] for r, c in zip(rows, cols)), cols)
               for cols in itertools.permutations(range(cos_AB.shape[1]), len(rows)))


@pytest.mark.parametrize("similarity", matching.SIMILARITIES)
@pytest.mark.parametrize("seed", range(4))
def test_hungarian_matches_brute_force(seed, similarity):
    g = torch.Generator().manual_seed(seed)
    dec_a, dec_b = torch.randn(5, 6, generator=g), torch.randn(6, 6, generator=g)
    cos_AB = matching.cosine_GF(dec_a, dec_b).numpy()
    sim_AB = cos_AB if similarity == "cosine" else (dec_a @ dec_b.T).numpy()
    full = matching.assign(dec_a, dec_b, range(5), full=True, similarity=similarity, chunk=4)
    best, cols = _brute_force(sim_AB, range(5))
    assert full.partners.tolist() == list(cols)
    assert math.isclose(sim_AB[range(5), full.partners].sum(), best, rel_tol=1e-6)
    some = matching.assign(dec_a, dec_b, [4, 1, 2], similarity=similarity)  # restricted: [3 features, d_sae_B]
    best, cols = _brute_force(sim_AB, [4, 1, 2])
    assert some.features.tolist() == [4, 1, 2] and some.partners.tolist() == list(cols)
    np.testing.assert_allclose(some.cosine, cos_AB[[4, 1, 2], list(cols)], rtol=1e-5, atol=1e-6)  # always cosine


def test_dot_and_cosine_differ_on_rows_of_different_norms_and_agree_on_unit_rows():
    dec_a = torch.eye(3)[:2]  # e1, e2
    dec_b = torch.stack([torch.eye(3)[0], 5 * torch.tensor([0.96, 0.28, 0.0])])  # e1; a long row near e1
    # cosine: identity 1 + 0.28 beats swap 0.96 + 0; dot: swap 5 * 0.96 + 0 beats identity 1 + 5 * 0.28
    for full in (False, True):
        assert matching.assign(dec_a, dec_b, [0, 1], full, "cosine").partners.tolist() == [0, 1]
        dot = matching.assign(dec_a, dec_b, [0, 1], full, "dot")
        assert dot.partners.tolist() == [1, 0]
        np.testing.assert_allclose(dot.cosine, [0.96, 0.0], atol=1e-6)  # reported as cosines, not dots
        unit_b = matching.unit_rows(dec_b)
        assert matching.assign(dec_a, unit_b, [0, 1], full, "dot").partners.tolist() == [0, 1]
    g = torch.Generator().manual_seed(0)
    unit_a, unit_b = (matching.unit_rows(torch.randn(n, 16, generator=g)) for n in (30, 40))
    features = [3, 17, 0, 29, 8]
    for full in (False, True):
        by_cos = matching.assign(unit_a, unit_b, features, full, "cosine")
        by_dot = matching.assign(unit_a, unit_b, features, full, "dot", chunk=7)
        assert by_cos.partners.tolist() == by_dot.partners.tolist()
        np.testing.assert_allclose(by_cos.cosine, by_dot.cosine)


@pytest.mark.parametrize("full", [False, True])
def test_dot_is_scipy_on_the_explicit_dot_matrix(full):
    from scipy.optimize import linear_sum_assignment

    g = torch.Generator().manual_seed(3)
    dec_a = torch.randn(12, 8, generator=g) * torch.rand(12, 1, generator=g) * 4  # rows of unequal norms
    dec_b = torch.randn(20, 8, generator=g) * torch.rand(20, 1, generator=g) * 4
    features = list(range(12)) if full else [11, 2, 7, 5]
    dot_AB = (dec_a.double() @ dec_b.double().T).numpy()
    rows, cols = linear_sum_assignment(dot_AB if full else dot_AB[features], maximize=True)
    expected = dict(zip(rows.tolist(), cols.tolist()))
    got = matching.assign(dec_a, dec_b, features, full=full, similarity="dot", chunk=6)
    assert got.partners.tolist() == [expected[f if full else i] for i, f in enumerate(features)]
    np.testing.assert_allclose(got.cosine, matching.cosine_GF(dec_a, dec_b).numpy()[features, got.partners],
                               rtol=1e-5, atol=1e-6)


def test_full_dot_permutation_is_eq_8s_least_squares_permutation():
    """For a full permutation, argmax <P, A^T B> = argmin sum_i ||A_i - B_P(i)||^2 (Eq. 8), by enumeration."""
    g = torch.Generator().manual_seed(5)
    dec_a, dec_b = torch.randn(6, 4, generator=g) * 3, torch.randn(6, 4, generator=g)
    sq_AB = torch.cdist(dec_a.double(), dec_b.double()).pow(2).numpy()
    _, cols = _brute_force(-sq_AB, range(6))
    assert matching.assign(dec_a, dec_b, range(6), full=True, similarity="dot").partners.tolist() == list(cols)


def test_similarity_is_validated_and_chunks_give_the_full_matrix():
    g = torch.Generator().manual_seed(2)
    a_ND, b_FD = torch.randn(9, 5, generator=g), torch.randn(23, 5, generator=g)
    for chunk in (1, 4, 23, 100):
        np.testing.assert_allclose(matching.similarity_GF(a_ND, b_FD, "dot", chunk), (a_ND @ b_FD.T).numpy(),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(matching.similarity_GF(a_ND, b_FD, "cosine", chunk),
                                   matching.cosine_GF(a_ND, b_FD).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(UserError, match="unknown diff.crosslayer.similarity 'l2': use dot .* or cosine") as err:
        matching.assign(a_ND, b_FD, [0], similarity="l2")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="positive"):
        matching.similarity_GF(a_ND, b_FD, "dot", chunk=0)


def test_assignment_finds_a_permutation_and_refuses_bad_requests():
    dec_a = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    dec_b = torch.empty_like(dec_a)
    dec_b[perm] = dec_a * 2.0
    for full, similarity in itertools.product((False, True), matching.SIMILARITIES):
        a = matching.assign(dec_a, dec_b, range(6), full=full, similarity=similarity)
        assert a.partners.tolist() == perm.tolist()
        np.testing.assert_allclose(a.cosine, 1.0, atol=1e-6)
    with pytest.raises(UserError, match="duplicates"):
        matching.assign(dec_a, dec_b, [1, 1])
    with pytest.raises(UserError, match="cannot be matched one-to-one"):
        matching.assign(dec_a, dec_b[:2], [0, 1, 2])


def test_matching_scores_and_classes_on_constructed_activations():
    f_i = np.array([1.0, 2.0, 0.0, 3.0])
    partners = {"same": f_i * 5, "orthogonal": np.array([0.0, 0.0, 4.0, 0.0]), "silent": np.zeros(4),
                "tilted": np.array([1.0, 2.0, 3.0, 0.0])}
    scores = {k: matching.matching_scores([f_i @ g], [f_i @ f_i], [g @ g])[0] for k, g in partners.items()}
    assert math.isclose(scores["same"], 1.0) and scores["orthogonal"] == 0.0 and scores["silent"] == 0.0
    assert math.isclose(scores["tilted"], 5 / 14)  # 5 / sqrt(14 * 14)
    classes = matching.classify([1.0, 0.71, 0.7, 0.6, 0.5, 0.49, 0.0])
    assert classes.tolist() == ["same", "same", "maybe", "maybe", "diff", "diff", "diff"]
    assert matching.class_counts(classes) == (2, 2, 3)
    assert matching.class_counts(classes).shares()["diff"] == 3 / 7
    with pytest.raises(UserError, match="0 < maybe < same < 1"):
        matching.classify([0.3], same=0.5, maybe=0.6)


class _FakeLM:
    """activations() hands out fixed per-hook tensors [batch, seq, d] by sequence index."""

    device = torch.device("cpu")

    def __init__(self, acts: dict[str, torch.Tensor]):
        self.acts = acts

    def activations(self, ids_BS, hook):
        rows = ids_BS[:, 0] // 1000  # the first token id encodes the sequence index
        return {h: self.acts[h][rows] for h in hook}

    iter_activations = LanguageModel.iter_activations


def test_pair_sums_give_the_activation_cosine_over_all_tokens():
    g = torch.Generator().manual_seed(0)
    acts_a = torch.relu(torch.randn(6, 5, 4, generator=g))
    acts_b = torch.relu(torch.randn(6, 5, 4, generator=g))
    acts_b[..., 2] = 3 * acts_a[..., 0]  # B's feature 2 is A's feature 0, rescaled
    lm = _FakeLM({"a": acts_a, "b": acts_b})
    token_ids = (np.arange(6)[:, None] * 1000 + 7).repeat(5, axis=1)
    token_ids[0, 1] = 1  # a special token: dropped
    sums = pair_sums(lm, "a", identity_sae(4), [0, 1], {"b": (identity_sae(4), np.array([2, 3]))}, token_ids,
                     ignore_token_ids=(1,), batch_sequences=4)["b"]
    keep = torch.ones(6, 5, dtype=torch.bool)
    keep[0, 1] = False
    fa, fb = acts_a[keep][:, [0, 1]].double(), acts_b[keep][:, [2, 3]].double()
    expected = (fa * fb).sum(0) / (fa.pow(2).sum(0) * fb.pow(2).sum(0)).sqrt()
    scores = matching.matching_scores(sums.dot, sums.sq_a, sums.sq_b)
    np.testing.assert_allclose(scores, expected.numpy(), rtol=1e-9)
    assert math.isclose(scores[0], 1.0) and sums.tokens == 29


@pytest.mark.parametrize("architecture", ["standard", "topk"])
def test_encoding_a_feature_subset_equals_the_full_encoding(architecture):
    cfg = SAEConfig(d_in=8, d_sae=32, architecture=architecture, k=4 if architecture == "topk" else None,
                    apply_b_dec_to_input=True)
    sae = initialize(SparseAutoencoder(cfg), "fixed", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.b_enc.normal_(generator=torch.Generator().manual_seed(1))
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(2))
    x = torch.randn(20, 8)
    ids = [31, 0, 7]
    torch.testing.assert_close(encode_features(sae, x, ids), sae.encode(x)[:, ids])


def test_random_features_are_seeded_sorted_and_avoid_f_r():
    a = matching.random_features(1000, 100, seed=42, exclude=[5, 6, 7])
    assert a == matching.random_features(1000, 100, seed=42, exclude=[5, 6, 7])
    assert a != matching.random_features(1000, 100, seed=43, exclude=[5, 6, 7])
    assert a == sorted(a) and len(set(a)) == 100 and not {5, 6, 7} & set(a)
    assert matching.random_features(10, 7, seed=0, exclude=[0, 1, 2]) == list(range(3, 10))
    with pytest.raises(UserError, match="exceeds the 7 features outside F_R"):
        matching.random_features(10, 8, seed=0, exclude=[0, 1, 2])
