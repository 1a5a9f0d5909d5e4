"""The fast training losses (hand-written backward, reused buffers) against their plain-autograd references:
standard's `_StandardLoss` vs `StandardSAE.reference_loss`, topk's `_TopKLoss` vs `TopKSAE.reference_loss`."""

import pytest
import torch
from torch.testing import assert_close

from reasoning_sae.sae import SAEConfig, SparseAutoencoder

D_IN, D_SAE, K, BATCH = 24, 160, 6, 48
PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")
RTOL = 1e-5


def random_sae(architecture: str, apply_b_dec: bool, dtype: str = "float32", seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cfg = SAEConfig(D_IN, D_SAE, architecture=architecture, apply_b_dec_to_input=apply_b_dec, dtype=dtype,
                    k=K if architecture == "topk" else None)
    sae = SparseAutoencoder(cfg)
    with torch.no_grad():
        for name in PARAMS:
            getattr(sae, name).copy_(torch.randn(getattr(sae, name).shape, generator=g) * 0.3)
        sae.W_dec.mul_(torch.rand(D_SAE, 1, generator=g) + 0.2)  # decoder rows of varied norms
    return sae


def random_x(seed: int = 1, dtype=torch.float32):
    return torch.randn(BATCH, D_IN, generator=torch.Generator().manual_seed(seed)).to(dtype)


def dead_mask(n_dead: int | None, seed: int = 2):
    if n_dead is None:
        return None
    mask = torch.zeros(D_SAE, dtype=torch.bool)
    mask[torch.randperm(D_SAE, generator=torch.Generator().manual_seed(seed))[:n_dead]] = True
    return mask


def grads(loss, sae, scale: float = 1.0):
    sae.zero_grad(set_to_none=True)
    (loss * scale).backward()
    return {name: getattr(sae, name).grad.clone() for name in PARAMS}


def assert_same_step(ours, ref, sae, scale: float = 1.0, rtol: float = RTOL):
    """Loss, its parts, latents, reconstruction and every gradient agree to `rtol` of their magnitude."""
    for a, b, what in [(ours.loss, ref.loss, "loss"), (ours.feats_BF, ref.feats_BF, "feats"),
                       (ours.recon_BD, ref.recon_BD, "recon")]:
        assert_close(a.detach(), b.detach(), rtol=rtol, atol=rtol * max(b.abs().max().item(), 1e-30), msg=what)
    assert set(ours.losses) == set(ref.losses)
    for name in ref.losses:
        assert_close(ours.losses[name], ref.losses[name], rtol=rtol, atol=0.0, msg=name)
    g_ours, g_ref = grads(ours.loss, sae, scale), grads(ref.loss, sae, scale)
    for name in PARAMS:
        magnitude = g_ref[name].abs().max().item()
        assert magnitude > 0, name
        assert_close(g_ours[name], g_ref[name], rtol=rtol, atol=rtol * magnitude, msg=name)


# --- standard ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_dead", [None, 40])
@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_standard_matches_reference(apply_b_dec, n_dead, dtype):
    """A dead mask (passed by the trainer for every architecture) changes nothing for standard."""
    sae = random_sae("standard", apply_b_dec, dtype)
    x = random_x(dtype=getattr(torch, dtype))
    ours = sae.training_loss(x, l1_coefficient=0.8, dead_mask_F=dead_mask(n_dead))
    ref = sae.reference_loss(x, l1_coefficient=0.8)
    assert 0.1 < (ref.feats_BF > 0).float().mean() < 0.9  # both sides of the ReLU are exercised
    assert_same_step(ours, ref, sae, scale=1.7)


# --- topk -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_dead", [None, 0, 5, 40, D_SAE])
@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_topk_matches_reference(apply_b_dec, n_dead, dtype):
    """n_dead=5 < d_in/2 (every dead latent in AuxK, loss scaled down); 40, d_sae: the top d_in/2 of them."""
    sae = random_sae("topk", apply_b_dec, dtype, seed=3)
    x = random_x(seed=4, dtype=getattr(torch, dtype))
    mask = dead_mask(n_dead)
    ours = sae.training_loss(x, dead_mask_F=mask, aux_coefficient=0.3)
    ref = sae.reference_loss(x, dead_mask_F=mask, aux_coefficient=0.3)
    if n_dead:
        assert ref.losses["auxiliary_reconstruction_loss"] > 0
    assert_same_step(ours, ref, sae, scale=1.7)


def test_topk_negative_winners_get_no_gradient():
    """With a very negative b_enc most winners are negative: the ReLU zeroes them and their gradient."""
    sae = random_sae("topk", apply_b_dec=True, seed=5)
    with torch.no_grad():
        sae.b_enc.sub_(4.0)
    x = random_x(seed=6)
    ours, ref = sae.training_loss(x), sae.reference_loss(x)
    assert ((ref.feats_BF > 0).sum(-1) < K).any()
    assert_same_step(ours, ref, sae)


def test_topk_losses_are_detached_and_outputs_shaped():
    sae = random_sae("topk", apply_b_dec=False)
    out = sae.training_loss(random_x(), dead_mask_F=dead_mask(30))
    assert out.loss.requires_grad and out.loss.ndim == 0
    for name, value in out.losses.items():
        assert not value.requires_grad, name
    assert not out.feats_BF.requires_grad and out.feats_BF.shape == (BATCH, D_SAE)
    assert not out.recon_BD.requires_grad and out.recon_BD.shape == (BATCH, D_IN)
    assert ((out.feats_BF != 0).sum(-1) <= K).all()


# --- reused buffers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["standard", "topk"])
def test_kept_outputs_survive_later_steps(architecture):
    """Latents, reconstruction and gradients come from reused buffers: one the caller still holds is never handed
    out again."""
    sae = random_sae(architecture, apply_b_dec=True, seed=7)
    x1, x2, x3 = random_x(seed=8), random_x(seed=9), random_x(seed=10)
    ref = sae.reference_loss(x1)
    expected_grads = grads(ref.loss, sae)
    sae.zero_grad(set_to_none=True)
    kept = sae.training_loss(x1)
    kept.loss.backward()
    kept_grads = {name: getattr(sae, name).grad for name in PARAMS}
    for x in (x2, x3, x2):
        sae.zero_grad(set_to_none=True)
        sae.training_loss(x).loss.backward()
    assert_close(kept.feats_BF, ref.feats_BF)
    assert_close(kept.recon_BD, ref.recon_BD)
    for name in PARAMS:
        assert_close(kept_grads[name], expected_grads[name], rtol=RTOL,
                     atol=RTOL * expected_grads[name].abs().max().item(), msg=name)


@pytest.mark.parametrize("architecture", ["standard", "topk"])
def test_gradients_accumulate(architecture):
    """zero_grad(set_to_none=False) and two steps: the gradients add up (the kept .grad is not a reused buffer)."""
    sae = random_sae(architecture, apply_b_dec=True, seed=16)
    x1, x2 = random_x(seed=17), random_x(seed=18)
    g1, g2 = grads(sae.reference_loss(x1).loss, sae), grads(sae.reference_loss(x2).loss, sae)
    for _ in range(2):  # the second round runs on reused buffers
        sae.zero_grad(set_to_none=False)
        sae.training_loss(x1).loss.backward()
        sae.training_loss(x2).loss.backward()
        for name in PARAMS:
            expected = g1[name] + g2[name]
            assert_close(getattr(sae, name).grad, expected, rtol=RTOL, atol=RTOL * expected.abs().max().item(),
                         msg=name)


@pytest.mark.parametrize("architecture", ["standard", "topk"])
def test_two_forwards_then_two_backwards(architecture):
    """Graphs alive at the same time (e.g. gradient accumulation written forward, forward, backward, backward)
    keep their own saved tensors."""
    sae = random_sae(architecture, apply_b_dec=True, seed=11)
    x1, x2 = random_x(seed=12), random_x(seed=13)
    sae.zero_grad(set_to_none=True)
    (sae.reference_loss(x1).loss + sae.reference_loss(x2).loss).backward()
    expected = {name: getattr(sae, name).grad.clone() for name in PARAMS}
    sae.zero_grad(set_to_none=True)
    out1, out2 = sae.training_loss(x1), sae.training_loss(x2)
    out1.loss.backward()
    out2.loss.backward()
    for name in PARAMS:
        assert_close(getattr(sae, name).grad, expected[name], rtol=RTOL,
                     atol=RTOL * expected[name].abs().max().item(), msg=name)


@pytest.mark.parametrize("architecture", ["standard", "topk"])
def test_buffers_are_reused_and_not_copied(architecture):
    import copy
    import pickle

    sae = random_sae(architecture, apply_b_dec=False, seed=14)
    x = random_x(seed=15)
    pointers = set()
    for _ in range(4):
        out = sae.training_loss(x)
        out.loss.backward()
        pointers.add(out.feats_BF.data_ptr())
        del out
    assert len(pointers) == 1  # released each step, so the same buffer comes back
    pool = sae._scratch_pool
    assert pool.buffers
    # the buffers are scratch, not state: copies and pickles of the pool (and of a module holding it) start empty
    assert copy.deepcopy(pool).buffers == {}
    assert pickle.loads(pickle.dumps(pool)).buffers == {}


@pytest.mark.parametrize("apply_b_dec", [False, True])
@pytest.mark.parametrize("architecture", ["standard", "topk"])
def test_reused_buffers_start_from_garbage(architecture, apply_b_dec):
    """Every reused buffer is fully overwritten before it is read: NaN left in all of them changes nothing."""
    sae = random_sae(architecture, apply_b_dec, seed=19)
    x = random_x(seed=20)
    mask = dead_mask(30) if architecture == "topk" else None
    sae.training_loss(x, dead_mask_F=mask).loss.backward()  # fills the pool
    sae.zero_grad(set_to_none=True)
    for buffers in sae._scratch_pool.buffers.values():
        for buffer in buffers:
            buffer.fill_(float("nan"))
    ours = sae.training_loss(x, dead_mask_F=mask)
    ref = sae.reference_loss(x, dead_mask_F=mask) if architecture == "topk" else sae.reference_loss(x)
    assert_same_step(ours, ref, sae)
