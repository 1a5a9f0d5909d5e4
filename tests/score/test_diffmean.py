import numpy as np
import pandas as pd
import pytest
import torch

from reasoning_sae import UserError
from reasoning_sae.score import reason_scores, score_pass
from reasoning_sae.score.diffmean import save_diffmean
from reasoning_sae.steering.vector import load_vector
from tests.helpers import identity_sae
from tests.score.test_reasonscore import FakeLM, FakeTokenizer

HOOK = "blocks.0.hook_resid_post"


def window_positions(ids, forms: list[list[int]], window, ignore, sinks=0):
    """D_R^W and D_¬R^W the long way: python sets of (sequence, position)."""
    before, after = window
    kept = {(b, q) for b, row in enumerate(ids) for q in range(sinks, len(row)) if row[q] not in ignore}
    pos = set()
    for b, row in enumerate(ids):
        for form in forms:
            for s in range(len(row) - len(form) + 1):
                if list(row[s : s + len(form)]) == form:
                    for p in range(s, s + len(form)):
                        pos |= {(b, q) for q in range(p - before, p + after + 1)}
    pos &= kept
    return pos, kept - pos


def test_diffmean_is_the_mean_over_the_windows_minus_the_mean_over_the_other_kept_tokens():
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(40, 6, generator=gen) * 3  # negative entries too: raw activations, never ReLU'd features
    ids = torch.randint(3, 40, (5, 30), generator=gen)
    ids[0, 0], ids[1, -1], ids[2, 5:7], ids[3, 10] = 30, 31, torch.tensor([32, 33]), 31
    ids[4, :4] = torch.tensor([1, 30, 2, 33])  # ignored tokens inside a window
    lm = FakeLM(emb, FakeTokenizer({"x": [30], "y": [31], "yy": [32, 33]}))
    kwargs = {"window": (2, 3), "ignore_token_ids": [1, 2], "batch_sequences": 2, "sink_positions": 1, "hook": HOOK}
    result = score_pass(lm, identity_sae(6), ids, ["x", "y", "yy"], **kwargs)
    pos, neg = window_positions(ids.tolist(), [[30], [31], [32, 33]], (2, 3), {1, 2}, sinks=1)
    want = (np.mean([emb[ids[b, q]].numpy() for b, q in pos], 0, dtype=np.float64)
            - np.mean([emb[ids[b, q]].numpy() for b, q in neg], 0, dtype=np.float64))
    got = result.diffmean
    assert (got.tokens_pos, got.tokens_neg, got.hook) == (len(pos), len(neg), HOOK) and got.vector_D.dtype == torch.float32
    np.testing.assert_allclose(got.vector_D.numpy(), want, rtol=1e-6, atol=1e-6)
    assert (got.tokens_pos, got.tokens_neg) == (result.table.attrs["tokens_pos"], result.table.attrs["tokens_neg"])
    # the same pass gives the same score table as reason_scores, to the bit
    pd.testing.assert_frame_equal(result.table, reason_scores(lm, identity_sae(6), ids, ["x", "y", "yy"], **kwargs),
                                  check_exact=True)
    assert score_pass(lm, identity_sae(6), ids, ["x", "y", "yy"], diffmean=False, **kwargs).diffmean is None


def test_a_corpus_without_tokens_outside_the_windows_is_a_user_error():
    lm = FakeLM(torch.rand(8, 3), FakeTokenizer({"a": [5]}))
    with pytest.raises(UserError, match="DiffMean needs tokens inside and outside the reasoning windows"):
        score_pass(lm, identity_sae(3), [[5, 1, 5]], ["a"], window=(1, 1), hook=HOOK)


def test_the_saved_vector_reads_back_with_its_hook_and_counts(tmp_path):
    lm = FakeLM(torch.randn(8, 3), FakeTokenizer({"a": [5]}))
    diffmean = score_pass(lm, identity_sae(3), [[1, 5, 2, 3, 4, 6]], ["a"], window=(0, 1), hook=HOOK).diffmean
    save_diffmean(diffmean, tmp_path / "diffmean.safetensors")
    loaded = load_vector(tmp_path / "diffmean.safetensors")
    assert torch.equal(loaded.vector_D, diffmean.vector_D) and loaded.hook == HOOK
    assert (loaded.metadata["tokens_pos"], loaded.metadata["tokens_neg"]) == ("2", "4")
    assert load_vector(tmp_path / "diffmean.safetensors", hook="blocks.3.hook_resid_post").hook.startswith("blocks.3")
