"""Test-only Lightning callbacks, passed to the train stage through its `callbacks` config."""

import os
import signal

from lightning.pytorch.callbacks import Callback


class KillAtStep(Callback):
    """SIGKILL the training process when it reaches `step`: no cleanup, as when a job is preempted."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, *_):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
