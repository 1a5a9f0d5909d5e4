"""The topk SAE: encoding and the training loss (MSE + AuxK) against SAELens' TopKSAE / TopKTrainingSAE with
rescale_acts_by_decoder_norm=False."""

import pytest
import torch
from sae_lens.saes.sae import TrainStepInput
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig
from torch.testing import assert_close

from reasoning_sae.errors import UserError
from reasoning_sae.sae import SAEConfig, SparseAutoencoder

D_IN, D_SAE, K, BATCH = 12, 48, 5, 20
PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")
AUX = 0.25


def random_sae(apply_b_dec: bool, seed: int = 0, k: int = K):
    g = torch.Generator().manual_seed(seed)
    sae = SparseAutoencoder(SAEConfig(D_IN, D_SAE, architecture="topk", k=k, apply_b_dec_to_input=apply_b_dec))
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(D_IN, D_SAE, generator=g) * 0.4)
        sae.b_enc.copy_(torch.randn(D_SAE, generator=g) * 0.3)
        sae.W_dec.copy_(torch.randn(D_SAE, D_IN, generator=g) * torch.rand(D_SAE, 1, generator=g) * 0.6)
        sae.b_dec.copy_(torch.randn(D_IN, generator=g) * 0.5)
    return sae


def random_x(seed: int = 1, shape=(BATCH, D_IN)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def copy_into(ref, sae):
    ref.load_state_dict({name: getattr(sae, name).detach().clone() for name in PARAMS}, strict=True)
    return ref


def dead_mask(n_dead: int, seed: int = 2) -> torch.Tensor:
    mask = torch.zeros(D_SAE, dtype=torch.bool)
    mask[torch.randperm(D_SAE, generator=torch.Generator().manual_seed(seed))[:n_dead]] = True
    return mask


def grads(loss, module):
    module.zero_grad(set_to_none=True)
    loss.backward()
    return {name: getattr(module, name).grad.clone() for name in PARAMS}


def test_sae_is_topk():
    sae = random_sae(False)
    assert type(sae).__name__ == "TopKSAE" and sae.cfg.architecture == "topk"


@pytest.mark.parametrize("shape", [(BATCH, D_IN), (3, 4, D_IN)])
@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_encode_matches_sae_lens(apply_b_dec, shape):
    sae = random_sae(apply_b_dec)
    ref = copy_into(TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, apply_b_dec_to_input=apply_b_dec,
                                          rescale_acts_by_decoder_norm=False)), sae)
    x = random_x(shape=shape)
    with torch.no_grad():
        feats = sae.encode(x)
        assert_close(feats, ref.encode(x))
        assert_close(sae(x), ref(x))
    assert ((feats != 0).sum(-1) <= K).all()
    assert (feats >= 0).all()


def test_encode_keeps_k_largest_relu():
    sae = random_sae(False)
    with torch.no_grad():
        sae.b_enc.fill_(-1.5)  # some of the k winners are negative, and the ReLU zeroes them
        x = random_x()
        pre = sae.encode_pre(x)
        feats = sae.encode(x)
    kth = pre.topk(K, dim=-1).values[:, -1:]
    expected = torch.where(pre >= kth, pre.relu(), torch.zeros_like(pre))
    assert_close(feats, expected)
    assert ((feats != 0).sum(-1) < K).any()


def test_decode_sparse_equals_dense_decode():
    sae = random_sae(True)
    x = random_x()
    with torch.no_grad():
        vals, idx = sae.encode_pre(x).topk(K, dim=-1)
        dense = torch.zeros(BATCH, D_SAE).scatter_(-1, idx, vals)
        assert_close(sae.decode_sparse(vals, idx), sae.decode(dense))


@pytest.mark.parametrize("n_dead", [None, 0, 3, 30, D_SAE])
@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_training_loss_matches_sae_lens(apply_b_dec, n_dead):
    """n_dead=3 < d_in/2 (AuxK scaled down, all dead latents used); 30 > d_in/2 (top d_in/2 of them)."""
    sae = random_sae(apply_b_dec, seed=3)
    cfg = TopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, apply_b_dec_to_input=apply_b_dec,
                                rescale_acts_by_decoder_norm=False, aux_loss_coefficient=AUX)
    ref = copy_into(TopKTrainingSAE(cfg), sae)
    x = random_x(seed=4)
    mask = None if n_dead is None else dead_mask(n_dead)
    ours = sae.training_loss(x, dead_mask_F=mask, aux_coefficient=AUX)
    theirs = ref.training_forward_pass(TrainStepInput(
        sae_in=x, coefficients={}, dead_neuron_mask=mask, n_training_steps=0, is_logging_step=False))
    assert_close(ours.loss, theirs.loss.detach())
    assert_close(ours.losses["mse_loss"], theirs.losses["mse_loss"].detach())
    aux_theirs = theirs.losses["auxiliary_reconstruction_loss"].detach()
    if n_dead:
        assert aux_theirs.item() > 0
        assert_close(ours.losses["auxiliary_reconstruction_loss"], aux_theirs)
    else:
        assert aux_theirs.item() == 0
        assert ours.losses.get("auxiliary_reconstruction_loss", torch.tensor(0.0)).item() == 0
    assert_close(ours.feats_BF, theirs.feature_acts.detach())
    assert_close(ours.recon_BD, theirs.sae_out.detach())
    g_ours, g_theirs = grads(ours.loss, sae), grads(theirs.loss, ref)
    for name in PARAMS:
        assert_close(g_ours[name], g_theirs[name], rtol=1e-4, atol=1e-5 * max(g_theirs[name].abs().max(), 1.0),
                     msg=name)


def test_aux_loss_value():
    """AuxK by hand: the top min(d_in/2, n_dead) dead pre-activations (no ReLU, no b_dec) fit the detached residual,
    scaled by min(n_dead / (d_in/2), 1)."""
    sae = random_sae(True, seed=5)
    x = random_x(seed=6)
    n_dead = 4
    mask = dead_mask(n_dead, seed=7)
    out = sae.training_loss(x, dead_mask_F=mask, aux_coefficient=AUX)
    with torch.no_grad():
        pre = sae.encode_pre(x)
        residual = x - out.recon_BD
        aux_acts = torch.where(mask, pre, torch.zeros_like(pre))  # n_dead < d_in/2: every dead latent takes part
        expected = AUX * (n_dead / (D_IN // 2)) * (aux_acts @ sae.W_dec - residual).pow(2).sum(-1).mean()
    assert_close(out.losses["auxiliary_reconstruction_loss"], expected)
    assert_close(out.loss.detach(), out.losses["mse_loss"] + expected)


def test_training_output_parts():
    sae = random_sae(True)
    x = random_x()
    out = sae.training_loss(x)
    assert_close(out.feats_BF, sae.encode(x).detach())
    assert_close(out.recon_BD, sae(x).detach())
    assert_close(out.losses["mse_loss"], (out.recon_BD - x).pow(2).sum(-1).mean())
    assert set(out.losses) == {"mse_loss"}
    assert not out.feats_BF.requires_grad and not out.recon_BD.requires_grad
    for name, value in out.losses.items():
        assert not value.requires_grad, name


def test_fold_input_scaling_keeps_selection():
    scale = 2.9
    sae = random_sae(True, seed=8)
    x = random_x(seed=9) / scale
    with torch.no_grad():
        feats_before, out_before = sae.encode(scale * x), sae(scale * x)
        sae.fold_input_scaling(scale)
        assert_close(sae.encode(x), feats_before, rtol=1e-5, atol=1e-5)
        assert_close(sae(x), out_before / scale, rtol=1e-5, atol=1e-5)


def test_fold_decoder_norm_refused():
    """Folding decoder norms rescales pre-activations per latent, which changes a topk SAE's winners (SAELens
    refuses too, unless the SAE was trained with rescale_acts_by_decoder_norm)."""
    sae = random_sae(False)
    before = {name: getattr(sae, name).detach().clone() for name in PARAMS}
    with pytest.raises(UserError, match="topk"):
        sae.fold_decoder_norm()
    for name in PARAMS:
        assert torch.equal(getattr(sae, name), before[name]), name


@pytest.mark.parametrize("k", [None, 0, D_SAE + 1])
def test_bad_k(k):
    with pytest.raises(UserError, match="0 < k <= d_sae"):
        SAEConfig(D_IN, D_SAE, architecture="topk", k=k)
