"""The link between SAEModule and a BufferDataModule, kept out of the module so that it trains on any iterable of
activation batches."""

import lightning as L
import torch


class BufferLink(L.Callback):
    """Sets the module's input scale from the buffer's first fill at fit start, and tells the mixing buffer after
    each batch that the batch it served was trained on (its checkpoint state counts only those)."""

    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not module.needs_input_scale:  # normalize_activations=none, or restored from the checkpoint
            return
        mean_norm = torch.tensor(trainer.datamodule.mean_norm(), device=module.device)
        module.set_input_scale(float(trainer.strategy.reduce(mean_norm, reduce_op="mean")))

    # Lightning runs checkpoint callbacks after all others: the checkpoint saved at the end of this batch counts it.
    def on_train_batch_end(self, trainer: L.Trainer, *_) -> None:
        trainer.datamodule.buffer.consumed()
