import pytest
import torch

from reasoning_sae import UserError
from reasoning_sae.diff.training import TensorSource, quality, train_sae
from reasoning_sae.sae import SAEConfig, SparseAutoencoder, initialize
from reasoning_sae.train.config import TrainConfig


def _config(**changes) -> TrainConfig:
    base = dict(architecture="standard", init="fixed", d_sae=32, training_tokens=640, batch_size_tokens=64,
                n_batches_in_buffer=4, lr=1e-3, log_every=5, seed=0)
    return TrainConfig(**{**base, **changes})


def _acts(n: int = 500, d: int = 8) -> torch.Tensor:
    """Sparse non-negative combinations of 12 directions, plus an offset."""
    g = torch.Generator().manual_seed(0)
    dict_KD = torch.randn(12, d, generator=g)
    return 3 * torch.relu(torch.randn(n, 12, generator=g) - 1.0) @ dict_KD + 2


def test_tensor_source_cycles_in_order():
    source = TensorSource(torch.arange(10.0)[:, None], chunk=4)
    reads = [source.read()[:, 0].tolist() for _ in range(4)]
    assert reads == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [0, 1, 2, 3]] and source.epoch == 1


def test_fine_tuning_starts_from_the_given_sae_exactly(tmp_path):
    """init_from with lr 0: the exported SAE is the saved one (the input scaling is folded out and back in)."""
    init = initialize(SparseAutoencoder(SAEConfig(d_in=8, d_sae=32)), "fixed",
                      generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        init.b_dec.copy_(torch.randn(8))
    init.save(tmp_path / "init")
    sae, _ = train_sae(_acts(), _config(init_from=str(tmp_path / "init"), lr=0.0), {"hook_name": "x"})
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        torch.testing.assert_close(getattr(sae, name), getattr(init, name), atol=1e-5, rtol=1e-5)
    assert sae.cfg.metadata["init_from"] == str(tmp_path / "init")
    trained, _ = train_sae(_acts(), _config(init_from=str(tmp_path / "init")), {"hook_name": "x"})
    assert not torch.allclose(trained.W_dec, init.W_dec)


def test_init_from_must_match_the_sae_being_built(tmp_path):
    SparseAutoencoder(SAEConfig(d_in=8, d_sae=16)).save(tmp_path / "small")
    with pytest.raises(UserError, match="but this run builds"):
        train_sae(_acts(), _config(init_from=str(tmp_path / "small")), {})
    with pytest.raises(UserError, match="not an SAE directory"):
        train_sae(_acts(), _config(init_from=str(tmp_path / "nowhere")), {})


def test_training_from_scratch_learns_a_reconstruction():
    sae, stats = train_sae(_acts(), _config(training_tokens=3200, lr=1e-2, l1_coefficient=1.0), {"hook_name": "x"})
    q = quality(sae, _acts())
    assert q["explained_variance"] > 0.7 and 0 < q["l0"] < 16 and stats["sparsity"].shape == (32,)
