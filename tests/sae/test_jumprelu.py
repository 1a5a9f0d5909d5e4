"""The jumprelu SAE against SAELens' JumpReLUSAE / JumpReLUTrainingSAE: encoding, every loss part and every gradient
(straight-through threshold gradients included) in each sparsity mode, the `threshold` tensor on disk both ways,
decoder-norm folding and the per-latent activation steering's clamp mode reads."""

import json

import pytest
import torch
from sae_lens import SAE
from sae_lens.saes.jumprelu_sae import (
    JumpReLUSAE as TheirJumpReLU,
    JumpReLUSAEConfig,
    JumpReLUTrainingSAE,
    JumpReLUTrainingSAEConfig,
)
from sae_lens.saes.sae import TrainStepInput
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

from reasoning_sae.errors import UserError
from reasoning_sae.sae import JumpReLUSAE, SAEConfig, SparseAutoencoder

D_IN, D_SAE, BATCH = 12, 48, 40
PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")
pytestmark = pytest.mark.filterwarnings("ignore:(?s).*model_from_pretrained_kwargs:UserWarning")


def random_sae(apply_b_dec: bool = True, seed: int = 0) -> JumpReLUSAE:
    g = torch.Generator().manual_seed(seed)
    sae = SparseAutoencoder(SAEConfig(D_IN, D_SAE, architecture="jumprelu", apply_b_dec_to_input=apply_b_dec))
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(D_IN, D_SAE, generator=g) * 0.4)
        sae.b_enc.copy_(torch.randn(D_SAE, generator=g) * 0.3)
        sae.W_dec.copy_(torch.randn(D_SAE, D_IN, generator=g) * (torch.rand(D_SAE, 1, generator=g) + 0.3))
        sae.b_dec.copy_(torch.randn(D_IN, generator=g) * 0.5)
        # thresholds near the pre-activations, so many fall inside the STE's bandwidth
        sae.threshold.copy_(torch.rand(D_SAE, generator=g) * 0.6)
    return sae


def random_x(seed: int = 1, shape=(BATCH, D_IN)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def copy_into(ref, sae):
    ref.load_state_dict({name: getattr(sae, name).detach().clone() for name in PARAMS}, strict=True)
    return ref


def grads(loss, module):
    module.zero_grad(set_to_none=True)
    loss.backward()
    return {name: getattr(module, name).grad.clone() for name in PARAMS}


def dead_mask(n_dead: int) -> torch.Tensor:
    mask = torch.zeros(D_SAE, dtype=torch.bool)
    mask[torch.randperm(D_SAE, generator=torch.Generator().manual_seed(2))[:n_dead]] = True
    return mask


SETTINGS = [
    {"jumprelu_sparsity_loss_mode": "step"},
    {"jumprelu_sparsity_loss_mode": "step", "jumprelu_ste_to_input": True, "jumprelu_bandwidth": 0.2},
    {"jumprelu_sparsity_loss_mode": "tanh", "jumprelu_tanh_scale": 2.5},
    {"jumprelu_sparsity_loss_mode": "quadratic", "target_l0": 7.0},
    {"jumprelu_sparsity_loss_mode": "tanh", "pre_act_loss_coefficient": 0.3, "dead": 9},
    {"jumprelu_sparsity_loss_mode": "step", "pre_act_loss_coefficient": 0.3, "dead": 0},
]


@pytest.mark.parametrize("apply_b_dec", [False, True])
@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_training_loss_and_gradients_match_sae_lens(apply_b_dec, settings):
    settings = dict(settings)
    n_dead = settings.pop("dead", None)
    mask = None if n_dead is None else dead_mask(n_dead)
    sae = random_sae(apply_b_dec, seed=3)
    ref = copy_into(JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(
        d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=apply_b_dec, **settings)), sae)
    x = random_x(seed=4)
    l0_coefficient = 0.7
    ours = sae.training_loss(x, l0_coefficient=l0_coefficient, dead_mask_F=mask, **settings)
    theirs = ref.training_forward_pass(TrainStepInput(
        sae_in=x, coefficients={"l0": l0_coefficient}, dead_neuron_mask=mask, n_training_steps=0,
        is_logging_step=False))
    assert set(ours.losses) == set(theirs.losses)
    assert ours.losses["l0_loss"] > 0
    for name, value in theirs.losses.items():
        assert_close(ours.losses[name], value.detach(), rtol=1e-5, atol=1e-5, msg=name)
    assert_close(ours.loss, theirs.loss.detach(), rtol=1e-5, atol=1e-5)
    assert_close(ours.feats_BF, theirs.feature_acts.detach())
    g_ours, g_theirs = grads(ours.loss, sae), grads(theirs.loss, ref)
    assert g_theirs["threshold"].abs().sum() > 0  # the STE reaches the threshold
    for name in PARAMS:
        assert_close(g_ours[name], g_theirs[name], rtol=1e-5, atol=1e-5, msg=name)


def test_the_threshold_is_projected_to_non_negative_before_the_step():
    sae = random_sae()
    with torch.no_grad():
        sae.threshold[:5] = -0.2
    sae.training_loss(random_x())
    assert (sae.threshold >= 0).all() and (sae.threshold[:5] == 0).all()


def test_the_sparsity_modes_read_by_the_reference_are_checked():
    with pytest.raises(ValueError, match="target_l0"):
        random_sae().reference_loss(random_x(), jumprelu_sparsity_loss_mode="quadratic")


@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_encode_matches_sae_lens(apply_b_dec):
    sae = random_sae(apply_b_dec)
    ref = copy_into(TheirJumpReLU(JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=apply_b_dec)), sae)
    x = random_x(shape=(3, 5, D_IN))
    with torch.no_grad():
        feats = sae.encode(x)
        assert_close(feats, ref.encode(x))
        assert_close(sae(x), ref(x))
    assert (feats > 0).any() and (feats == 0).any()


def test_our_save_loads_in_sae_lens_and_theirs_here(tmp_path):
    sae = random_sae()
    sae.cfg = sae.cfg.replace(metadata={"hook_name": "blocks.2.hook_resid_post"})
    sae.save(tmp_path / "ours")
    assert set(load_file(str(tmp_path / "ours" / "sae_weights.safetensors"))) == set(PARAMS)
    theirs = SAE.load_from_disk(tmp_path / "ours")
    assert isinstance(theirs, TheirJumpReLU)
    x = random_x()
    with torch.no_grad():
        assert_close(theirs.encode(x), sae.encode(x))
        assert_close(theirs(x), sae(x))
    ref = copy_into(TheirJumpReLU(JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE)), random_sae(seed=5))
    ref.save_model(tmp_path / "theirs")
    loaded = SparseAutoencoder.load(tmp_path / "theirs")
    assert type(loaded) is JumpReLUSAE
    with torch.no_grad():
        assert_close(loaded.threshold, ref.threshold)
        assert_close(loaded.encode(x), ref.encode(x))
        assert_close(loaded(x), ref(x))


@pytest.mark.parametrize(("threshold", "message"), [
    (torch.full((D_SAE,), -0.1), "negative or non-finite JumpReLU threshold"),
    (torch.full((D_SAE,), float("nan")), "negative or non-finite JumpReLU threshold"),
    (torch.zeros(D_SAE + 1), "threshold of shape (49,)"),
    (None, "no tensor threshold"),
])
def test_a_bad_threshold_on_disk_is_one_line(tmp_path, threshold, message):
    random_sae().save(tmp_path / "sae")
    weights = load_file(str(tmp_path / "sae" / "sae_weights.safetensors"))
    if threshold is None:
        del weights["threshold"]
    else:
        weights["threshold"] = threshold
    save_file(weights, str(tmp_path / "sae" / "sae_weights.safetensors"))
    with pytest.raises(UserError) as info:
        SparseAutoencoder.load(tmp_path / "sae")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_zero_threshold_loads_as_relu(tmp_path):
    """SAELens training projects thresholds to >= 0, so exactly 0 occurs: that latent is a plain ReLU."""
    sae = random_sae()
    with torch.no_grad():
        sae.threshold.zero_()
    sae.save(tmp_path / "sae")
    x = random_x()
    with torch.no_grad():
        assert_close(SparseAutoencoder.load(tmp_path / "sae").encode(x), sae.encode_pre(x).relu())


def test_fold_decoder_norm_scales_the_threshold_as_sae_lens():
    sae = random_sae()
    ref = copy_into(TheirJumpReLU(JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE)), sae)
    x = random_x()
    with torch.no_grad():
        out_before = sae(x)
        norms = sae.fold_decoder_norm()
        ref.fold_W_dec_norm()
        assert_close(sae.threshold, ref.threshold)
        assert_close(sae.W_dec.norm(dim=1), torch.ones(D_SAE))
        assert_close(sae(x), out_before, rtol=1e-5, atol=1e-5)
        assert_close(sae.encode(x), ref.encode(x))
        assert (norms != 1).any()


def test_latent_activation_is_the_latents_column_of_encode():
    sae = random_sae()
    x = random_x()
    idx = torch.tensor([3, 17, 40])
    with torch.no_grad():
        pre = sae.encode_pre(x)
        assert_close(sae.latent_activation(pre[:, idx], idx), sae.encode(x)[:, idx])
        # with another latent's threshold the answer differs: the threshold is looked up by idx
        assert not torch.equal(sae.latent_activation(pre[:, idx], idx + 1), sae.encode(x)[:, idx])


def test_saved_cfg_is_sae_lens_jumprelu(tmp_path):
    random_sae().save(tmp_path / "sae")
    raw = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert raw["architecture"] == "jumprelu" and "k" not in raw


def test_latent_activation_of_each_architecture():
    """standard: ReLU; batchtopk and matryoshka_batchtopk encode as a JumpReLU at the running threshold: per latent;
    topk's winners depend on the other latents: refused, naming mode=add."""
    x, idx = random_x(), torch.tensor([0, 5, 9])
    for architecture, k, widths in (("standard", None, None), ("batchtopk", 4, None)):
        sae = SparseAutoencoder(SAEConfig(D_IN, D_SAE, architecture=architecture, k=k, matryoshka_widths=widths))
        with torch.no_grad():
            sae.b_enc.normal_()
            sae.W_enc.normal_()
            pre = sae.encode_pre(x)
            assert_close(sae.latent_activation(pre[:, idx], idx), sae.encode(x)[:, idx])
    sae = SparseAutoencoder(SAEConfig(D_IN, D_SAE, architecture="topk", k=4))
    with pytest.raises(UserError, match=r"^steering mode clamp needs .* a topk SAE does not give: use mode=add$"):
        sae.latent_activation(torch.zeros(2, 3), idx)
