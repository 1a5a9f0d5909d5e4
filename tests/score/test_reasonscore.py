import math

import numpy as np
import pytest
import torch

from reasoning_sae import SAEConfig, SparseAutoencoder, UserError
from reasoning_sae.models.lm import LanguageModel
from reasoning_sae.score import reason_scores, top_features
from tests.helpers import identity_sae


class FakeTokenizer:
    """Surface strings map to fixed token-id sequences."""

    unk_token_id = 0

    def __init__(self, table: dict[str, list[int]]):
        self.table = table

    def encode(self, text, add_special_tokens=False):
        return list(self.table.get(text, [self.unk_token_id]))

    def decode(self, ids):
        return next((s for s, t in self.table.items() if t == list(ids)), "<unk>")


class FakeLM:
    """Activations are a fixed embedding of each token id, so feature values can be written by hand."""

    device = torch.device("cpu")
    activation_cache = None  # LanguageModel.iter_activations reads it: always run the "model"

    def __init__(self, embedding: torch.Tensor, tokenizer):
        self.embedding, self.tokenizer = embedding, tokenizer

    def activations(self, ids_BS, hook):
        return self.embedding[ids_BS]

    iter_activations = LanguageModel.iter_activations


def score(lm, sae, ids, vocabulary, **kwargs):
    return reason_scores(lm, sae, ids, vocabulary, hook="blocks.0.hook_resid_post", **kwargs)


def test_hand_computed_example():
    # positions:        0    1(a)  2    3    4(b)  5      window (0 before, 1 after): a -> {1,2}, b -> {4,5}
    ids = [[10, 1, 11, 12, 2, 13]]
    emb = torch.zeros(14, 3)
    emb[10], emb[1], emb[11], emb[12], emb[2] = (torch.tensor(v, dtype=torch.float32) for v in
                                                  ([1, 0, 4], [2, 3, 0], [0, 3, 0], [1, 0, 4], [2, 0, 0]))
    lm = FakeLM(emb, FakeTokenizer({"a": [1], "b": [2]}))
    table = score(lm, identity_sae(3), ids, ["a", "b"], window=(0, 1), alpha=0.7)
    # mean over D_R^W {1,2,4,5}: (1, 1.5, 0); over the rest {0,3}: (1, 0, 4)
    np.testing.assert_allclose(table["mean_pos"], [1.0, 1.5, 0.0])
    np.testing.assert_allclose(table["mean_neg"], [1.0, 0.0, 4.0])
    np.testing.assert_allclose(table["share_pos"], [0.4, 0.6, 0.0])
    np.testing.assert_allclose(table["share_neg"], [0.2, 0.0, 0.8])
    np.testing.assert_allclose(table["mean_a"], [1.0, 3.0, 0.0])
    np.testing.assert_allclose(table["mean_b"], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(table["entropy"], [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(table["reason_score"], [0.4 * 1.0 - 0.2, 0.0, -0.8], atol=1e-8)  # eps of 1e-12
    assert table["rank"].tolist() == [1, 2, 3]
    assert table.attrs["tokens_pos"] == 4 and table.attrs["tokens_neg"] == 2


def reference(emb, ids, vocab_ids: dict[str, list[list[int]]], window, alpha, ignore):
    """Eq. 5 the long way: python sets of positions, a loop over features."""
    before, after = window
    groups = list(vocab_ids)
    word_pos = {g: set() for g in groups}
    for g, forms in vocab_ids.items():
        for b, row in enumerate(ids):
            for form in forms:
                for s in range(len(row) - len(form) + 1):
                    if list(row[s : s + len(form)]) == form:
                        for p in range(s, s + len(form)):
                            for q in range(max(0, p - before), min(len(row), p + after + 1)):
                                if row[q] not in ignore:
                                    word_pos[g].add((b, q))
    pos = set().union(*word_pos.values())
    neg = {(b, q) for b, row in enumerate(ids) for q in range(len(row)) if row[q] not in ignore} - pos
    n_feat = emb.shape[1]

    def mean(i, positions):
        return sum(max(0.0, float(emb[ids[b][q], i])) for b, q in positions) / max(1, len(positions))

    mu_pos = [mean(i, pos) for i in range(n_feat)]
    mu_neg = [mean(i, neg) for i in range(n_feat)]
    scores = []
    for i in range(n_feat):
        words = [mean(i, word_pos[g]) for g in groups]
        total = sum(words)
        probs = [w / (total + 1e-12) for w in words]
        h = -sum(p * math.log(p) for p in probs if p > 0) / math.log(len(groups))
        scores.append(mu_pos[i] / (sum(mu_pos) + 1e-12) * h**alpha - mu_neg[i] / (sum(mu_neg) + 1e-12))
    return scores


@pytest.mark.parametrize(("window", "alpha"), [((2, 3), 0.7), ((1, 2), 0.7), ((0, 0), 1.0), ((4, 1), 0.3)])
def test_equals_a_loop_over_features_on_random_data(window, alpha):
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(40, 12, generator=gen)
    ids = torch.randint(3, 40, (5, 30), generator=gen)
    ids[0, 0], ids[1, -1], ids[2, 5:7], ids[3, 10:12], ids[3, 12] = 30, 31, torch.tensor([32, 33]), 30, 31
    ids[4, :4] = torch.tensor([1, 30, 2, 33])  # ignored tokens inside a window
    table = {"x": [30], "y": [31], "yy": [32, 33]}
    lm = FakeLM(emb, FakeTokenizer(table))
    sae = identity_sae(12)
    got = score(lm, sae, ids, ["x", "y", "yy"], window=window, alpha=alpha, ignore_token_ids=[1, 2],
                batch_sequences=2)
    want = reference(emb, ids.tolist(), {"x": [[30]], "y": [[31]], "yy": [[32, 33]]}, window, alpha, {1, 2})
    np.testing.assert_allclose(got["reason_score"], want, rtol=1e-6, atol=1e-9)


def test_surface_forms_share_a_group_and_overlapping_windows_count_once():
    emb = torch.eye(6)
    lm = FakeLM(emb, FakeTokenizer({"wait": [1], " Wait": [2]}))
    ids = [[3, 1, 2, 4, 5]]  # both forms adjacent: windows overlap
    table = score(lm, identity_sae(6), ids, ["wait", " Wait"], window=(1, 1))
    assert [c for c in table.columns if c.startswith("mean_")] == ["mean_pos", "mean_neg", "mean_wait"]
    assert table.attrs["tokens_pos"] == 4 and table.attrs["tokens_neg"] == 1
    assert table.attrs["tokens_per_word"] == {"wait": 4}


def test_silent_feature_and_absent_word(caplog):
    emb = torch.zeros(8, 4)
    emb[:, 0] = 1.0
    emb[5, 1] = 2.0
    lm = FakeLM(emb, FakeTokenizer({"a": [5], "b": [6]}))
    table = score(lm, identity_sae(4), [[3, 5, 4, 3, 3]], ["a", "b"], window=(0, 0))
    assert table.loc[3, "reason_score"] == 0.0 and table.loc[3, "entropy"] == 0.0
    assert "'b' never occurs" in caplog.text
    assert table.attrs["tokens_per_word"] == {"a": 1, "b": 0}


def test_fold_decoder_norm_scales_activations_by_the_decoder_norm():
    emb = torch.rand(8, 3)
    lm = FakeLM(emb, FakeTokenizer({"a": [5]}))
    sae = identity_sae(3)
    with torch.no_grad():
        sae.W_dec.mul_(torch.tensor([[2.0], [1.0], [0.5]]))
    plain = score(lm, sae, [[1, 5, 2, 3]], ["a"], window=(0, 0))
    folded = score(lm, sae, [[1, 5, 2, 3]], ["a"], window=(0, 0), fold_decoder_norm=True)
    np.testing.assert_allclose(folded["mean_pos"], plain["mean_pos"] * np.array([2.0, 1.0, 0.5]), rtol=1e-6)


def test_bad_input():
    lm = FakeLM(torch.rand(8, 3), FakeTokenizer({"a": [5]}))
    with pytest.raises(UserError, match="vocabulary is empty"):
        score(lm, identity_sae(3), [[1, 2]], [])
    with pytest.raises(UserError, match="cannot produce the vocabulary word 'zzz'"):
        score(lm, identity_sae(3), [[1, 2]], ["a", "zzz"])
    with pytest.raises(UserError, match="no occurrence of any vocabulary word"):
        score(lm, identity_sae(3), [[1, 2, 3]], ["a"])
    table = score(lm, identity_sae(3), [[1, 5, 3]], ["a"])
    for q in (0, 1, 1.5):
        with pytest.raises(UserError, match="strictly between 0 and 1"):
            top_features(table, q=q)


def test_top_features_by_quantile_and_count():
    import pandas as pd

    table = pd.DataFrame({"reason_score": np.linspace(-1, 1, 1000)})
    assert top_features(table, q=0.997) == [999, 998, 997]
    assert top_features(table, top_k=2) == [999, 998]


def test_real_model_and_default_vocabulary(smollm2):
    from reasoning_sae.data.demo import reasoning_rows
    from reasoning_sae.vocab.vocabulary import DEFAULT_VOCABULARY

    text = " ".join(row["deepseek_reasoning"] for row in reasoning_rows(4))
    ids = smollm2.tokenizer(text, return_tensors="pt")["input_ids"][:, :256].reshape(2, 128)
    sae = SparseAutoencoder(SAEConfig(d_in=576, d_sae=64, metadata={"hook_name": "blocks.6.hook_resid_post"}))
    with torch.no_grad():
        sae.W_enc.normal_(generator=torch.Generator().manual_seed(0))
    table = reason_scores(smollm2, sae, ids, DEFAULT_VOCABULARY, window=(2, 3), alpha=0.7, ignore_token_ids=[0, 1, 2])
    assert len(table) == 64 and table["reason_score"].notna().all()
    assert table.attrs["tokens_pos"] > 0 and sum(v > 0 for v in table.attrs["tokens_per_word"].values()) >= 3


def test_sink_positions_count_in_no_set():
    # a: token 1; window (0, 1). Position 0 holds a vocabulary word whose window reaches position 1.
    ids = [[1, 11, 12, 1, 13], [14, 1, 12, 15, 16]]
    emb = torch.zeros(20, 2)
    emb[1, 0], emb[11, 0], emb[14, 1] = 5.0, 3.0, 9.0  # feature 1 fires only at a sequence's first token
    lm = FakeLM(emb, FakeTokenizer({"a": [1]}))
    kept = score(lm, identity_sae(2), ids, ["a"], window=(0, 1))
    dropped = score(lm, identity_sae(2), ids, ["a"], window=(0, 1), sink_positions=1)
    # windows {0, 1, 3, 4} and {1, 2}; the sink at position 0 leaves its set, the word there still marks position 1
    assert (kept.attrs["tokens_pos"], kept.attrs["tokens_neg"]) == (6, 4)
    assert (dropped.attrs["tokens_pos"], dropped.attrs["tokens_neg"]) == (5, 3)
    assert kept.loc[1, "mean_neg"] == 9.0 / 4 and dropped.loc[1, "mean_neg"] == 0 and dropped.loc[1, "reason_score"] == 0
    assert dropped.loc[0, "mean_pos"] == pytest.approx((3.0 + 5.0 + 5.0) / 5)  # 11 after the sink, then a twice
