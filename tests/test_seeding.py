import os
import random

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from reasoning_sae import UserError, config_check
from reasoning_sae.seeding import MAX_SEED, SEED_ENV, seed_run
from reasoning_sae.train.config import TrainConfig


def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_seed_run_seeds_torch_numpy_and_random_and_leaves_no_environment(monkeypatch):
    for name in SEED_ENV:
        monkeypatch.delenv(name, raising=False)
    seed_run(7)
    first = _draws()
    seed_run(7)
    assert _draws() == first
    torch.manual_seed(7)
    assert torch.rand(3).tolist() == first[0]  # the same torch stream as torch.manual_seed
    assert not set(SEED_ENV) & set(os.environ)  # nothing for Lightning's DDP setup or the next multirun job to read


def test_seed_run_keeps_a_seed_the_user_exported(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    monkeypatch.delenv("PL_SEED_WORKERS", raising=False)
    seed_run(MAX_SEED)
    assert os.environ["PL_GLOBAL_SEED"] == "3" and "PL_SEED_WORKERS" not in os.environ


@pytest.mark.parametrize(("check", "message"), [
    (lambda seed: config_check.check(OmegaConf.create({"seed": seed})), r"^seed="),
    (lambda seed: TrainConfig.from_mapping({"seed": seed}), r"^sae\.seed="),
])
def test_seeds_are_bounded_as_seed_everything_takes_them(check, message):
    check(MAX_SEED)
    with pytest.raises(UserError, match=message + rf"{MAX_SEED + 1}: give a whole number in \[0, {MAX_SEED}\]"):
        check(MAX_SEED + 1)
