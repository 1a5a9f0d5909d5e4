"""The batchtopk SAE against SAELens' BatchTopKTrainingSAE (rescale_acts_by_decoder_norm=False): every loss part and
gradient, with and without dead latents, the running threshold, and the inference save (a jumprelu SAE with that
threshold for every latent) both ways."""

import json

import pytest
import torch
from sae_lens import SAE
from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
from sae_lens.saes.jumprelu_sae import JumpReLUSAE as TheirJumpReLU
from sae_lens.saes.sae import TrainStepInput
from torch.testing import assert_close

from reasoning_sae.errors import UserError
from reasoning_sae.sae import BatchTopKSAE, JumpReLUSAE, SAEConfig, SparseAutoencoder

D_IN, D_SAE, K, BATCH = 12, 48, 5, 20
PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")
AUX, LR = 0.5, 0.05
pytestmark = pytest.mark.filterwarnings("ignore:(?s).*model_from_pretrained_kwargs:UserWarning")


def fill(sae, seed: int):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(D_IN, D_SAE, generator=g) * 0.4)
        sae.b_enc.copy_(torch.randn(D_SAE, generator=g) * 0.3)
        sae.W_dec.copy_(torch.randn(D_SAE, D_IN, generator=g) * (torch.rand(D_SAE, 1, generator=g) + 0.3))
        sae.b_dec.copy_(torch.randn(D_IN, generator=g) * 0.5)
    return sae


def random_sae(architecture="batchtopk", apply_b_dec: bool = True, seed: int = 0, **cfg):
    return fill(SparseAutoencoder(SAEConfig(D_IN, D_SAE, architecture=architecture, k=K,
                                            apply_b_dec_to_input=apply_b_dec, **cfg)), seed)


def random_x(seed: int = 1):
    return torch.randn(BATCH, D_IN, generator=torch.Generator().manual_seed(seed))


def copy_into(ref, sae):
    state = {name: getattr(sae, name).detach().clone() for name in PARAMS}
    ref.load_state_dict({**state, "topk_threshold": sae.topk_threshold.clone()}, strict=True)
    return ref


def dead_mask(n_dead: int) -> torch.Tensor:
    mask = torch.zeros(D_SAE, dtype=torch.bool)
    mask[torch.randperm(D_SAE, generator=torch.Generator().manual_seed(2))[:n_dead]] = True
    return mask


def step_input(x, mask):
    return TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=mask, n_training_steps=0, is_logging_step=False)


def assert_same_step(sae, ref, ours, theirs):
    """Every loss part, the total, the latents and every parameter's gradient within 1e-5."""
    assert list(ours.losses) == list(theirs.losses)
    for name, value in theirs.losses.items():
        assert_close(ours.losses[name], value.detach(), rtol=1e-5, atol=1e-5, msg=name)
    assert_close(ours.loss, theirs.loss.detach(), rtol=1e-5, atol=1e-5)
    assert_close(ours.feats_BF, theirs.feature_acts.detach())
    assert_close(ours.recon_BD, theirs.sae_out.detach())
    for module, out in ((sae, ours), (ref, theirs)):
        module.zero_grad(set_to_none=True)
        out.loss.backward()
    for name in PARAMS:
        assert_close(getattr(sae, name).grad, getattr(ref, name).grad, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("n_dead", [None, 0, 3, 30, D_SAE])
@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_training_loss_and_gradients_match_sae_lens(apply_b_dec, n_dead):
    """n_dead=3 < d_in/2 (AuxK scaled down); 30 > d_in/2 (the top d_in/2 dead latents per token)."""
    sae = random_sae(apply_b_dec=apply_b_dec, seed=3)
    ref = copy_into(BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(
        d_in=D_IN, d_sae=D_SAE, k=K, apply_b_dec_to_input=apply_b_dec, rescale_acts_by_decoder_norm=False,
        aux_loss_coefficient=AUX, topk_threshold_lr=LR)), sae)
    x = random_x(seed=4)
    mask = None if n_dead is None else dead_mask(n_dead)
    for step in range(3):  # the running threshold follows SAELens' over several steps
        ours = sae.training_loss(x + step, dead_mask_F=mask, aux_coefficient=AUX, topk_threshold_lr=LR)
        theirs = ref.training_forward_pass(step_input(x + step, mask))
        assert ((ours.feats_BF > 0).sum() <= K * BATCH) and ((ours.feats_BF > 0).sum(-1) != K).any()
        assert (ours.losses["auxiliary_reconstruction_loss"] > 0) == bool(n_dead)
        assert_same_step(sae, ref, ours, theirs)
        assert sae.topk_threshold.dtype == torch.double and sae.topk_threshold > 0
        assert_close(sae.topk_threshold, ref.topk_threshold, rtol=1e-12, atol=0)


def test_the_threshold_is_the_running_average_of_the_smallest_kept_activation():
    sae = random_sae()
    out = sae.training_loss(random_x(), topk_threshold_lr=LR)
    smallest = out.feats_BF[out.feats_BF > 0].min().double()
    assert_close(sae.topk_threshold, LR * smallest)


def test_encode_is_jumprelu_at_the_running_threshold():
    sae = random_sae()
    with torch.no_grad():
        sae.topk_threshold.fill_(0.4)
        pre = sae.encode_pre(random_x())
        feats = sae.encode(random_x())
    assert_close(feats, torch.where(pre > 0.4, pre, torch.zeros_like(pre)))
    idx = torch.tensor([1, 7])
    assert_close(sae.latent_activation(pre[:, idx], idx), feats[:, idx])


@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_saved_as_sae_lens_saves_it_for_inference(tmp_path, apply_b_dec):
    """Our save and SAELens' save_inference_model of the same trained SAE: the same cfg essentials and tensors, each
    loads in the other library as a jumprelu SAE that encodes as ours does."""
    sae = random_sae(apply_b_dec=apply_b_dec, metadata={"hook_name": "blocks.1.hook_resid_post"})
    ref = copy_into(BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(
        d_in=D_IN, d_sae=D_SAE, k=K, apply_b_dec_to_input=apply_b_dec, rescale_acts_by_decoder_norm=False,
        topk_threshold_lr=LR)), sae)
    x = random_x()
    for _ in range(3):
        sae.training_loss(x, topk_threshold_lr=LR)
        ref.training_forward_pass(step_input(x, None))
    sae.save(tmp_path / "ours")
    ref.save_inference_model(tmp_path / "theirs")
    raw_ours = json.loads((tmp_path / "ours" / "cfg.json").read_text())
    raw_theirs = json.loads((tmp_path / "theirs" / "cfg.json").read_text())
    assert raw_ours["architecture"] == raw_theirs["architecture"] == "jumprelu"
    assert raw_ours["metadata"]["training_architecture"] == raw_theirs["metadata"]["training_architecture"] == "batchtopk"
    theirs_in_sae_lens = SAE.load_from_disk(tmp_path / "ours")
    assert isinstance(theirs_in_sae_lens, TheirJumpReLU)
    ours_here = SparseAutoencoder.load(tmp_path / "theirs")
    assert type(ours_here) is JumpReLUSAE
    assert_close(ours_here.threshold, torch.full((D_SAE,), float(sae.topk_threshold)))
    with torch.no_grad():
        expected = sae.encode(x)
        assert (expected > 0).any() and (expected == 0).any()
        for other in (theirs_in_sae_lens, ours_here, SparseAutoencoder.load(tmp_path / "ours")):
            assert_close(other.encode(x), expected)
            assert_close(other(x), sae(x))


def test_a_sae_lens_training_checkpoint_is_refused(tmp_path):
    ref = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K))
    ref.save_model(tmp_path / "ckpt")
    with pytest.raises(UserError, match="batchtopk training checkpoint: load the inference SAE"):
        SparseAutoencoder.load(tmp_path / "ckpt")


def test_fold_decoder_norm_is_refused():
    sae = random_sae()
    before = sae.W_dec.detach().clone()
    with pytest.raises(UserError, match="batchtopk SAE selects"):
        sae.fold_decoder_norm()
    assert torch.equal(sae.W_dec, before)


def test_fold_input_scaling_keeps_the_threshold_meaningful():
    scale = 2.5
    sae = random_sae()
    with torch.no_grad():
        sae.topk_threshold.fill_(0.3)
        x = random_x() / scale
        before = sae.encode(scale * x)
        sae.fold_input_scaling(scale)
        assert_close(sae.encode(x), before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [None, 0, D_SAE + 1])
def test_bad_k(k):
    with pytest.raises(UserError, match=r"^batchtopk SAE needs 0 < k <= d_sae"):
        SAEConfig(D_IN, D_SAE, architecture="batchtopk", k=k)


def test_is_registered():
    assert type(random_sae()) is BatchTopKSAE
