"""SAEs trained inside the diff stage on activations held in memory (small models): the train stage's SAEModule,
SAE construction (`sae.init_from` for fine-tunes) and mixing buffer, fed from one cached LM pass, so the SAEs of
other layers and of the stage-wise trajectories cost no further forward passes."""

import logging

import lightning as L
import numpy as np
import torch

from reasoning_sae.sae import SparseAutoencoder
from reasoning_sae.seeding import seed_run
from reasoning_sae.train.build import build_sae
from reasoning_sae.train.callbacks import BufferLink
from reasoning_sae.train.config import TrainConfig
from reasoning_sae.train.module import SAEModule
from reasoning_sae.train.quality import explained_variance_pooled
from reasoning_sae.train.store import BufferDataModule, MixingBuffer


class TensorSource:
    """Activation vectors from memory in a fixed order, cycling (the interface of train.store's sources)."""

    def __init__(self, acts_ND: torch.Tensor, chunk: int):
        self.acts_ND, self.chunk = acts_ND, chunk
        self.cursor = 0
        self.epoch = 0

    def read(self) -> torch.Tensor:
        if self.cursor >= len(self.acts_ND):
            self.cursor, self.epoch = 0, self.epoch + 1
        chunk_ND = self.acts_ND[self.cursor : self.cursor + self.chunk]
        self.cursor += len(chunk_ND)
        return chunk_ND

    def state_dict(self) -> dict:
        return {"cursor": self.cursor, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.cursor, self.epoch = state["cursor"], state["epoch"]


class TensorDataModule(BufferDataModule):
    """The training data module over vectors already in memory."""

    def __init__(self, acts_ND: torch.Tensor, batch_size: int, n_batches_in_buffer: int, seed: int):
        super().__init__()
        self.buffer = MixingBuffer(TensorSource(acts_ND, batch_size), batch_size, n_batches_in_buffer, seed)



def train_sae(acts_ND: torch.Tensor, tc: TrainConfig, metadata: dict, trainer: dict | None = None,
              export_metadata: dict | None = None) -> tuple[SparseAutoencoder, dict[str, torch.Tensor]]:
    """An SAE (from scratch, or from tc.init_from) trained on `acts_ND` [N, d_model] for tc.training_tokens vectors
    (cycling over them), exported to read raw activations, with its feature statistics."""
    seed_run(tc.seed)
    module = SAEModule(build_sae(tc, acts_ND.shape[1], metadata), tc)
    data = TensorDataModule(acts_ND, tc.batch_size_tokens, tc.n_batches_in_buffer, tc.seed)
    quiet = logging.getLogger("lightning.pytorch")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # one "GPU available ..." banner per small SAE says nothing
    try:
        fit = L.Trainer(**{**(trainer or {}), "devices": 1, "strategy": "auto", "enable_progress_bar": False},
                        max_steps=tc.total_steps, max_epochs=-1, gradient_clip_val=tc.grad_clip or None,
                        gradient_clip_algorithm="norm", callbacks=[BufferLink()], logger=False,
                        enable_checkpointing=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
        fit.fit(module, datamodule=data)
    finally:
        quiet.setLevel(level)
    return module.export(export_metadata)


@torch.no_grad()
def quality(sae: SparseAutoencoder, acts_ND: torch.Tensor, n: int = 1024) -> dict[str, float]:
    """L0 and explained variance on up to n of the (training) vectors, spread evenly over them."""
    x_ND = acts_ND[np.linspace(0, len(acts_ND) - 1, min(n, len(acts_ND))).astype(np.int64)].to(sae.W_enc.dtype)
    feats_NF = sae.encode(x_ND)
    resid = (x_ND - sae.decode(feats_NF)).pow(2).sum()
    total = (x_ND - x_ND.mean(0)).pow(2).sum().clamp(min=1e-12)
    return {"l0": float((feats_NF > 0).float().sum(-1).mean()),
            "explained_variance": float(explained_variance_pooled(resid, total))}
