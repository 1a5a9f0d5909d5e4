"""The standard (ReLU, decoder-norm-weighted L1) SAE: the fused training loss against plain autograd and SAELens'
StandardTrainingSAE, plus the weight folds of the base class (against SAELens' folds)."""

import pytest
import torch
from sae_lens.saes.sae import TrainStepInput
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig, StandardTrainingSAE, StandardTrainingSAEConfig
from torch.testing import assert_close

from reasoning_sae.sae import SAEConfig, SparseAutoencoder

D_IN, D_SAE, BATCH = 12, 40, 24
PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")
COEF = 0.7


def random_sae(apply_b_dec: bool, dtype: str = "float32", seed: int = 0, b_enc_shift: float = 0.0):
    """Random weights (decoder rows of varied norms) and non-zero biases; about half the latents fire per token."""
    g = torch.Generator().manual_seed(seed)
    sae = SparseAutoencoder(SAEConfig(D_IN, D_SAE, apply_b_dec_to_input=apply_b_dec, dtype=dtype))
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(D_IN, D_SAE, generator=g) * 0.4)
        sae.b_enc.copy_(torch.randn(D_SAE, generator=g) * 0.3 + b_enc_shift)
        sae.W_dec.copy_(torch.randn(D_SAE, D_IN, generator=g) * torch.rand(D_SAE, 1, generator=g) * 0.6)
        sae.b_dec.copy_(torch.randn(D_IN, generator=g) * 0.5)
    return sae


def random_x(dtype=torch.float32, seed: int = 1, n: int = BATCH):
    return torch.randn(n, D_IN, generator=torch.Generator().manual_seed(seed)).to(dtype)


def grads(loss, module, names=PARAMS, scale: float = 1.0):
    module.zero_grad(set_to_none=True)
    (loss * scale).backward()
    return {name: getattr(module, name).grad.clone() for name in names}


def tolerances(dtype: str):
    return dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)


def sae_lens_training(sae, coef: float = COEF) -> StandardTrainingSAE:
    cfg = StandardTrainingSAEConfig(
        d_in=sae.d_in, d_sae=sae.d_sae, dtype=sae.cfg.dtype, apply_b_dec_to_input=sae.cfg.apply_b_dec_to_input,
        l1_coefficient=coef, lp_norm=1.0,
    )
    ref = StandardTrainingSAE(cfg)
    ref.load_state_dict({name: getattr(sae, name).detach().clone() for name in PARAMS}, strict=True)
    return ref


def sae_lens_step(ref, x, coef: float = COEF):
    return ref.training_forward_pass(TrainStepInput(
        sae_in=x, coefficients={"l1": coef}, dead_neuron_mask=None, n_training_steps=0, is_logging_step=False))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_training_loss_matches_reference_loss(apply_b_dec, dtype):
    sae = random_sae(apply_b_dec, dtype)
    x = random_x(getattr(torch, dtype))
    ours, ref = sae.training_loss(x, l1_coefficient=COEF), sae.reference_loss(x, l1_coefficient=COEF)
    tol = tolerances(dtype)
    assert_close(ours.loss, ref.loss, **tol)
    for name in ("mse_loss", "l1_loss"):
        assert_close(ours.losses[name], ref.losses[name], **tol)
    assert_close(ours.feats_BF, ref.feats_BF, **tol)
    assert_close(ours.recon_BD, ref.recon_BD, **tol)
    # an upstream gradient other than 1 (as under a loss scaler) scales every gradient
    g_ours, g_ref = grads(ours.loss, sae, scale=2.5), grads(ref.loss, sae, scale=2.5)
    for name in PARAMS:
        scale = g_ref[name].abs().max().item()
        assert scale > 0, name
        assert_close(g_ours[name], g_ref[name], rtol=tol["rtol"], atol=tol["atol"] * max(scale, 1.0), msg=name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_training_loss_matches_sae_lens(apply_b_dec, dtype):
    sae = random_sae(apply_b_dec, dtype, seed=3)
    x = random_x(getattr(torch, dtype), seed=4)
    ref_sae = sae_lens_training(sae)
    ours, theirs = sae.training_loss(x, l1_coefficient=COEF), sae_lens_step(ref_sae, x)
    tol = tolerances(dtype)
    assert_close(ours.loss, theirs.loss.detach(), **tol)
    assert set(theirs.losses) == {"mse_loss", "l1_loss"}
    for name in ("mse_loss", "l1_loss"):
        assert_close(ours.losses[name], theirs.losses[name].detach(), **tol, msg=name)
    assert_close(ours.feats_BF, theirs.feature_acts.detach(), **tol)
    assert_close(ours.recon_BD, theirs.sae_out.detach(), **tol)
    g_ours, g_theirs = grads(ours.loss, sae), grads(theirs.loss, ref_sae)
    for name in PARAMS:
        scale = max(g_theirs[name].abs().max().item(), 1.0)
        assert_close(g_ours[name], g_theirs[name], rtol=tol["rtol"], atol=tol["atol"] * scale, msg=name)


def test_training_output_parts():
    sae = random_sae(apply_b_dec=True)
    x = random_x()
    out = sae.training_loss(x, l1_coefficient=COEF)
    feats = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc).detach()
    assert 0.2 < (feats > 0).float().mean() < 0.8  # the data exercise both sides of the ReLU
    recon = (feats @ sae.W_dec + sae.b_dec).detach()
    mse = (recon - x).pow(2).sum(-1).mean()
    l1 = COEF * (feats * sae.W_dec.detach().norm(dim=1)).sum(-1).mean()
    assert_close(out.feats_BF, feats)
    assert_close(out.feats_BF, sae.encode(x).detach())
    assert_close(out.recon_BD, recon)
    assert_close(out.recon_BD, sae(x).detach())
    assert_close(out.losses["mse_loss"], mse)
    assert_close(out.losses["l1_loss"], l1)
    assert_close(out.loss.detach(), mse + l1)
    assert out.loss.requires_grad and out.loss.ndim == 0
    assert not out.feats_BF.requires_grad and not out.recon_BD.requires_grad
    assert out.feats_BF.shape == (BATCH, D_SAE) and out.recon_BD.shape == (BATCH, D_IN)


def test_l1_coefficient_zero_is_plain_mse():
    sae = random_sae(apply_b_dec=False)
    x = random_x()
    out = sae.training_loss(x, l1_coefficient=0.0)
    assert out.losses["l1_loss"].item() == 0.0
    assert_close(out.loss.detach(), out.losses["mse_loss"])
    ref = sae.reference_loss(x, l1_coefficient=0.0)
    g_ours, g_ref = grads(out.loss, sae), grads(ref.loss, sae)
    for name in PARAMS:
        assert_close(g_ours[name], g_ref[name], rtol=1e-4, atol=1e-5, msg=name)


def test_reported_losses_are_detached():
    sae = random_sae(apply_b_dec=False)
    out = sae.training_loss(random_x(), l1_coefficient=COEF)
    # reference_loss reports detached parts (a part left in the graph would have to get its own gradient)
    for name, value in out.losses.items():
        assert not value.requires_grad, name


@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_all_latents_dead(apply_b_dec):
    sae = random_sae(apply_b_dec, b_enc_shift=-100.0)
    x = random_x()
    out = sae.training_loss(x, l1_coefficient=COEF)
    assert out.feats_BF.abs().sum().item() == 0.0
    assert_close(out.recon_BD, sae.b_dec.detach().expand(BATCH, D_IN))
    assert out.losses["l1_loss"].item() == 0.0
    g_ours = grads(out.loss, sae)
    g_ref = grads(sae.reference_loss(x, l1_coefficient=COEF).loss, sae)
    ref_sae = sae_lens_training(sae)
    g_theirs = grads(sae_lens_step(ref_sae, x).loss, ref_sae)
    for name in ("W_enc", "b_enc", "W_dec"):
        assert g_ours[name].abs().sum().item() == 0.0, name
    expected_b_dec = 2 * (sae.b_dec.detach() - x).sum(0) / BATCH
    for g in (g_ours, g_ref, g_theirs):
        assert_close(g["b_dec"], expected_b_dec)
        for name in PARAMS:
            assert_close(g_ours[name], g[name], msg=name)


def test_input_dtype_is_cast():
    sae = random_sae(apply_b_dec=True)
    x = random_x()
    out32, out64 = sae.training_loss(x, l1_coefficient=COEF), sae.training_loss(x.double(), l1_coefficient=COEF)
    assert out64.loss.dtype == torch.float32
    assert_close(out64.loss, out32.loss)


def test_encode_decode_match_sae_lens_inference():
    sae = random_sae(apply_b_dec=True)
    ref = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=True))
    ref.load_state_dict({name: getattr(sae, name).detach().clone() for name in PARAMS})
    x = torch.randn(3, 5, D_IN)  # extra leading dims
    with torch.no_grad():
        assert_close(sae.encode(x), ref.encode(x))
        assert_close(sae(x), ref(x))


# --- folds (SparseAutoencoder in base.py) -----------------------------------------------------------------------


@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_fold_decoder_norm_matches_sae_lens(apply_b_dec):
    sae = random_sae(apply_b_dec, seed=5)
    ref = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=apply_b_dec))
    ref.load_state_dict({name: getattr(sae, name).detach().clone() for name in PARAMS})
    x = random_x(seed=6)
    with torch.no_grad():
        norms = sae.W_dec.norm(dim=1).clone()
        feats_before, recon_before = sae.encode(x), sae(x)
        returned = sae.fold_decoder_norm()
        ref.fold_W_dec_norm()
        for name in PARAMS:
            assert_close(getattr(sae, name), getattr(ref, name), msg=name)
        assert_close(returned, norms)
        assert_close(sae.W_dec.norm(dim=1), torch.ones(D_SAE))
        assert_close(sae(x), recon_before, rtol=1e-5, atol=1e-5)
        assert_close(sae.encode(x), feats_before * norms, rtol=1e-5, atol=1e-5)


def test_fold_decoder_norm_zero_row_stays_finite():
    sae = random_sae(apply_b_dec=False)
    with torch.no_grad():
        sae.W_dec[3] = 0
        sae.fold_decoder_norm()
    for name in PARAMS:
        assert torch.isfinite(getattr(sae, name)).all(), name


@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_fold_input_scaling(apply_b_dec):
    """An SAE that reads s*x, after folding s, reads x: same latents, output divided by s (as SAELens folds it)."""
    scale = 3.7
    sae = random_sae(apply_b_dec, seed=7)
    ref = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=apply_b_dec))
    ref.load_state_dict({name: getattr(sae, name).detach().clone() for name in PARAMS})
    x = random_x(seed=8) / scale
    with torch.no_grad():
        feats_before, out_before = sae.encode(scale * x), sae(scale * x)
        sae.fold_input_scaling(scale)
        ref.fold_activation_norm_scaling_factor(scale)
        assert_close(sae.encode(x), feats_before, rtol=1e-5, atol=1e-5)
        assert_close(sae(x), out_before / scale, rtol=1e-5, atol=1e-5)
        for name in PARAMS:
            assert_close(getattr(sae, name), getattr(ref, name), msg=name)
