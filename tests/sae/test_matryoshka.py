"""The matryoshka_batchtopk SAE against SAELens' MatryoshkaBatchTopKTrainingSAE (rescale_acts_by_decoder_norm=False):
every loss part (one inner_mse_loss per prefix) and gradient, with several prefixes, dead latents and both AuxK
forms; saved for inference as SAELens does (a jumprelu SAE); bad prefix lists refused."""

import json

import pytest
import torch
from sae_lens import SAE
from sae_lens.saes.jumprelu_sae import JumpReLUSAE as TheirJumpReLU
from sae_lens.saes.matryoshka_batchtopk_sae import (
    MatryoshkaBatchTopKTrainingSAE,
    MatryoshkaBatchTopKTrainingSAEConfig,
)
from torch.testing import assert_close

from reasoning_sae.errors import UserError
from reasoning_sae.sae import MatryoshkaBatchTopKSAE, SAEConfig, SparseAutoencoder
from tests.sae.test_batchtopk import (
    AUX, D_IN, D_SAE, K, LR, assert_same_step, copy_into, dead_mask, fill, random_x, step_input,
)

WIDTHS = [4, 16, 30, D_SAE]
pytestmark = pytest.mark.filterwarnings("ignore:(?s).*model_from_pretrained_kwargs:UserWarning")


def random_sae(apply_b_dec: bool = True, seed: int = 0, widths=WIDTHS) -> MatryoshkaBatchTopKSAE:
    return fill(SparseAutoencoder(SAEConfig(D_IN, D_SAE, architecture="matryoshka_batchtopk", k=K,
                                            apply_b_dec_to_input=apply_b_dec, matryoshka_widths=list(widths))), seed)


def reference(sae, apply_b_dec, widths=WIDTHS, **cfg):
    return copy_into(MatryoshkaBatchTopKTrainingSAE(MatryoshkaBatchTopKTrainingSAEConfig(
        d_in=D_IN, d_sae=D_SAE, k=K, apply_b_dec_to_input=apply_b_dec, rescale_acts_by_decoder_norm=False,
        aux_loss_coefficient=AUX, topk_threshold_lr=LR, matryoshka_widths=list(widths), **cfg)), sae)


@pytest.mark.parametrize("widths", [WIDTHS, [20, D_SAE]], ids=["4-levels", "2-levels"])
@pytest.mark.parametrize("use_matryoshka_aux_loss", [False, True])
@pytest.mark.parametrize("n_dead", [None, 5, 30])
@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_training_loss_and_gradients_match_sae_lens(apply_b_dec, n_dead, use_matryoshka_aux_loss, widths):
    sae = random_sae(apply_b_dec, seed=3, widths=widths)
    ref = reference(sae, apply_b_dec, widths, use_matryoshka_aux_loss=use_matryoshka_aux_loss)
    mask = None if n_dead is None else dead_mask(n_dead)
    x = random_x(seed=4)
    ours = sae.training_loss(x, dead_mask_F=mask, aux_coefficient=AUX, topk_threshold_lr=LR,
                             use_matryoshka_aux_loss=use_matryoshka_aux_loss)
    theirs = ref.training_forward_pass(step_input(x, mask))
    assert list(ours.losses) == ["mse_loss", "auxiliary_reconstruction_loss",
                                 *(f"inner_mse_loss_{w}" for w in widths[:-1])]
    assert_same_step(sae, ref, ours, theirs)
    assert_close(sae.topk_threshold, ref.topk_threshold, rtol=1e-12, atol=0)


def test_the_per_level_aux_loss_differs_from_the_whole_sae_one():
    sae, x, mask = random_sae(), random_x(), dead_mask(30)
    whole = sae.reference_loss(x, dead_mask_F=mask).losses["auxiliary_reconstruction_loss"]
    per_level = sae.reference_loss(x, dead_mask_F=mask, use_matryoshka_aux_loss=True).losses
    assert whole > 0 and per_level["auxiliary_reconstruction_loss"] > 0
    assert not torch.isclose(whole, per_level["auxiliary_reconstruction_loss"])


def test_inner_losses_are_the_prefix_reconstructions():
    sae, x = random_sae(), random_x()
    out = sae.reference_loss(x)
    for width in WIDTHS[:-1]:
        prefix = out.feats_BF.clone()
        prefix[:, width:] = 0
        assert_close(out.losses[f"inner_mse_loss_{width}"], (sae.decode(prefix) - x).pow(2).sum(-1).mean().detach())


def test_saved_for_inference_as_sae_lens_does(tmp_path):
    sae = random_sae()
    ref = reference(sae, True)
    x = random_x()
    sae.training_loss(x, topk_threshold_lr=LR)
    ref.training_forward_pass(step_input(x, None))
    sae.save(tmp_path / "ours")
    ref.save_inference_model(tmp_path / "theirs")
    raw = json.loads((tmp_path / "ours" / "cfg.json").read_text())
    assert raw["architecture"] == "jumprelu" and raw["metadata"]["training_architecture"] == "matryoshka_batchtopk"
    assert raw["metadata"]["training_architecture_details"]["matryoshka_widths"] == WIDTHS
    in_sae_lens = SAE.load_from_disk(tmp_path / "ours")
    assert isinstance(in_sae_lens, TheirJumpReLU)
    with torch.no_grad():
        for other in (in_sae_lens, SparseAutoencoder.load(tmp_path / "theirs")):
            assert_close(other.encode(x), sae.encode(x))
            assert_close(other(x), sae(x))


@pytest.mark.parametrize(("widths", "message"), [
    ([16, 4, D_SAE], "is not strictly increasing"),
    ([4, 4, D_SAE], "is not strictly increasing"),
    ([4, 16], f"does not end at d_sae={D_SAE}"),
    ([0, D_SAE], "strictly increasing positive widths"),
    ([], "strictly increasing positive widths"),
    (None, "strictly increasing positive widths"),
])
def test_bad_widths_are_one_line(widths, message):
    with pytest.raises(UserError, match="^matryoshka_widths=") as info:
        SAEConfig(D_IN, D_SAE, architecture="matryoshka_batchtopk", k=K, matryoshka_widths=widths)
    assert message in str(info.value) and "set sae.matryoshka_widths" in str(info.value)


def test_fold_decoder_norm_is_refused():
    with pytest.raises(UserError, match="matryoshka_batchtopk SAE selects"):
        random_sae().fold_decoder_norm()
