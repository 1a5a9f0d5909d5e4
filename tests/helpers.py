"""Test helpers: a Lightning callback passed to the train stage through its `callbacks` config, and fakes."""

import os
import signal

import torch
from lightning.pytorch.callbacks import Callback

from reasoning_sae.sae import SAEConfig, SparseAutoencoder


def identity_sae(d: int) -> SparseAutoencoder:
    """An SAE whose latents are the (ReLU'd) input coordinates, so feature values can be written by hand."""
    sae = SparseAutoencoder(SAEConfig(d_in=d, d_sae=d))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(d))
        sae.W_dec.copy_(torch.eye(d))
    return sae


class KillAtStep(Callback):
    """SIGKILL the training process when it reaches `step`: no cleanup, as when a job is preempted. `group`:
    the whole process group (every DDP rank at once, as SLURM does; start the command in a new session)."""

    def __init__(self, step: int, group: bool = False):
        self.step, self.group = step, group

    def on_train_batch_start(self, trainer, *_):
        if trainer.global_step == self.step and trainer.global_rank == 0:
            if self.group:
                os.killpg(os.getpgid(0), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
