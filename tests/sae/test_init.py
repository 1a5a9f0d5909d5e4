"""Initialisation presets: `paper` (sae-lens 5.5.2's heuristic init: non-negative decoder rows) and `fixed`."""

import pytest
import torch
from torch.testing import assert_close

from reasoning_sae.errors import UserError
from reasoning_sae.sae import SAEConfig, SparseAutoencoder, initialize

D_IN, D_SAE = 16, 64


def make(architecture: str = "standard", dtype: str = "float32"):
    k = 4 if architecture == "topk" else None
    sae = SparseAutoencoder(SAEConfig(D_IN, D_SAE, architecture=architecture, k=k, dtype=dtype))
    with torch.no_grad():  # start from junk so the init must overwrite everything
        for param in sae.parameters():
            param.fill_(7.0)
    return sae


def seeded(seed: int = 0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("architecture", ["standard", "topk"])
def test_paper(architecture):
    sae = initialize(make(architecture), preset="paper", generator=seeded())
    assert (sae.W_dec >= 0).all()
    assert (sae.W_dec > 0).float().mean() > 0.99
    assert_close(sae.W_dec.norm(dim=1), torch.full((D_SAE,), 0.1))
    assert torch.equal(sae.W_enc, sae.W_dec.T)
    assert not torch.equal(sae.W_dec[0], sae.W_dec[1])
    assert (sae.b_enc == 0).all() and (sae.b_dec == 0).all()


def test_fixed():
    sae = initialize(make(), preset="fixed", generator=seeded())
    assert_close(sae.W_dec.norm(dim=1), torch.full((D_SAE,), 0.1))
    signs_per_row = [(row > 0).any() and (row < 0).any() for row in sae.W_dec]
    assert all(signs_per_row)
    assert abs((sae.W_dec > 0).float().mean().item() - 0.5) < 0.1
    assert torch.equal(sae.W_enc, sae.W_dec.T)
    assert (sae.b_enc == 0).all() and (sae.b_dec == 0).all()
    # random directions: far from the shared positive-orthant direction the paper preset has
    cos = torch.nn.functional.normalize(sae.W_dec, dim=1).sum(1) / D_IN**0.5
    assert cos.abs().mean() < 0.5


def test_default_preset_is_fixed():
    assert torch.equal(initialize(make(), generator=seeded(3)).W_dec,
                       initialize(make(), preset="fixed", generator=seeded(3)).W_dec)


@pytest.mark.parametrize("preset", ["paper", "fixed"])
def test_seeded(preset):
    a = initialize(make(), preset=preset, generator=seeded(1))
    b = initialize(make(), preset=preset, generator=seeded(1))
    c = initialize(make(), preset=preset, generator=seeded(2))
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.W_dec, c.W_dec)


def test_decoder_norm_and_return_value():
    sae = make()
    assert initialize(sae, preset="fixed", decoder_norm=0.5, generator=seeded()) is sae
    assert_close(sae.W_dec.norm(dim=1), torch.full((D_SAE,), 0.5))


@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
def test_other_dtypes(dtype):
    sae = initialize(make(dtype=dtype), preset="paper", generator=seeded())
    assert sae.W_dec.dtype == getattr(torch, dtype)
    assert_close(sae.W_dec.float().norm(dim=1), torch.full((D_SAE,), 0.1), rtol=1e-2, atol=1e-3)


def test_unknown_preset():
    with pytest.raises(UserError, match="unknown SAE init 'kaiming'.*paper, fixed"):
        initialize(make(), preset="kaiming")
