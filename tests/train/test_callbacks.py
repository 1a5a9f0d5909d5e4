import math
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from reasoning_sae import UserError
from reasoning_sae.sae import SAEConfig, SparseAutoencoder, initialize
from reasoning_sae.train.callbacks import BufferLink
from reasoning_sae.train.config import TrainConfig
from reasoning_sae.train.module import SAEModule
from reasoning_sae.train.store import BufferDataModule, MixingBuffer


class RandomSource:
    """Chunks of random vectors [5, 8] in a fixed order."""

    def __init__(self):
        self.generator = torch.Generator().manual_seed(0)

    def read(self) -> torch.Tensor:
        return 3 * torch.randn(5, 8, generator=self.generator)


class RandomData(BufferDataModule):
    def __init__(self):
        super().__init__()
        self.buffer = MixingBuffer(RandomSource(), batch_size=4, n_batches=4, seed=0)


def _module(**overrides) -> SAEModule:
    cfg = TrainConfig(training_tokens=40, batch_size_tokens=10, **overrides)
    sae = initialize(SparseAutoencoder(SAEConfig(d_in=8, d_sae=16)), "fixed", generator=torch.Generator().manual_seed(0))
    return SAEModule(sae, cfg)


def _trainer(data: BufferDataModule):
    return SimpleNamespace(datamodule=data, strategy=SimpleNamespace(reduce=lambda tensor, reduce_op: tensor))


def test_buffer_link_scales_inputs_by_the_first_fill_once():
    data, module = RandomData(), _module()
    assert module.needs_input_scale
    BufferLink().on_fit_start(_trainer(data), module)
    fill_ND = torch.cat([data.buffer.ready, data.buffer.kept])
    assert float(module.scaling_factor) == pytest.approx(math.sqrt(8) / fill_ND.norm(dim=-1).mean().item())
    assert not module.needs_input_scale
    module.scaling_factor.fill_(2.0)  # as a resumed run restores it from its checkpoint
    BufferLink().on_fit_start(_trainer(data), module)
    assert float(module.scaling_factor) == 2.0 and not _module(normalize_activations="none").needs_input_scale


def test_buffer_link_counts_each_trained_batch_as_consumed():
    data = RandomData()
    data.buffer.next_batch()
    data.buffer.next_batch()  # the batch Lightning fetches ahead
    BufferLink().on_train_batch_end(_trainer(data), _module(), torch.tensor(0.0), None, 0)
    assert data.buffer.pending == 1 and data.buffer.served - data.buffer.pending == 1


def _fit(module: SAEModule) -> None:
    batches = [torch.randn(10, 8, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=4, max_epochs=-1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))


def test_the_module_trains_on_any_iterable_of_batches():
    module = _module(normalize_activations="none")
    _fit(module)
    assert module.global_step == 4 and int(module.tokens_seen) == 40
    scaled = _module()
    scaled.set_input_scale(4.0)
    _fit(scaled)
    assert float(scaled.scaling_factor) == pytest.approx(math.sqrt(8) / 4.0) and int(scaled.tokens_seen) == 40


def test_an_unset_input_scale_stops_the_fit_naming_the_fix():
    with pytest.raises(UserError, match="needs the input scale before training: fit with train.callbacks.BufferLink"):
        _fit(_module())
