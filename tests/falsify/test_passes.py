import pytest
import torch

from reasoning_sae import SAEConfig, SparseAutoencoder
from reasoning_sae.falsify.passes import feature_encoder, window_means
from tests.helpers import random_sae

FEATURES = [30, 2, 17, 5]


@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_the_sliced_encoder_equals_the_full_encode_restricted_to_the_features(apply_b_dec):
    sae = random_sae(d_in=24, d_sae=32, apply_b_dec=apply_b_dec)
    x = torch.randn(3, 5, 24, generator=torch.Generator().manual_seed(0)) * 4
    full = sae.encode(x)[..., FEATURES]
    assert (full > 0).any() and (full == 0).any()  # the ReLU matters here
    torch.testing.assert_close(feature_encoder(sae, FEATURES)(x), full)


def test_a_topk_sae_ranks_every_latent_before_restricting():
    sae = SparseAutoencoder(SAEConfig(d_in=24, d_sae=32, architecture="topk", k=4))
    with torch.no_grad():
        sae.W_enc.normal_(generator=torch.Generator().manual_seed(1))
    x = torch.randn(6, 24, generator=torch.Generator().manual_seed(2))
    got = feature_encoder(sae, FEATURES)(x)
    torch.testing.assert_close(got, sae.encode(x)[:, FEATURES])
    sliced = torch.relu(x @ sae.W_enc[:, FEATURES] + sae.b_enc[FEATURES])
    assert not torch.equal(got, sliced)  # a column slice would ignore the other latents' ranks


def test_window_means_average_the_kept_positions_around_each_site():
    gen = torch.Generator().manual_seed(0)
    feats_BSG = torch.rand(2, 10, 3, generator=gen)
    keep_BS = torch.rand(2, 10, generator=gen) > 0.3
    keep_BS[1, 0:5] = False
    rows, positions = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 5, 9, 1])
    got = window_means(feats_BSG, keep_BS, rows, positions, (2, 3))
    for n, (r, p) in enumerate(zip(rows.tolist(), positions.tolist(), strict=True)):
        window = [q for q in range(p - 2, p + 4) if 0 <= q < 10 and keep_BS[r, q]]
        if window:
            torch.testing.assert_close(got[n], feats_BSG[r, window].mean(0))
        else:
            assert got[n].isnan().all()
    assert got[3].isnan().all()  # positions 0..4 of row 1, none kept
