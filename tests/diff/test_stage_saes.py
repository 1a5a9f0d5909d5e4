"""The SAEs the diff stage compares with: which are missing, the training jobs, their settings, the given ones."""

from pathlib import Path

import pytest

from reasoning_sae.diff.stage_saes import Job, Missing, jobs, load_all_given, missing, train_config
from reasoning_sae.errors import UserError
from tests.helpers import random_sae


@pytest.fixture
def diff_cfg(compose):
    return lambda *overrides: compose("diff", overrides)


def test_jobs_train_layers_then_trajectories_each_after_its_prefix(diff_cfg, tmp_path):
    cfg = diff_cfg("diff.stagewise.trajectories=[SD,S,SDS]", "diff.train.training_tokens=1000")
    planned = jobs(cfg, 2, Missing([1, 3], ["SDS", "SD"]), {"S": "/given/S"}, tmp_path)
    assert [j.name for j in planned] == ["L1", "L3", "SD", "SDS"]
    assert planned[0] == Job("L1", 1, 1000, None, None)
    assert planned[2] == Job("SD", 2, 300, "/given/S", "reasoning")  # 30% of the tokens, from the given S
    assert planned[3].init_from == str(tmp_path / "SD") and planned[3].source == "chat"
    assert planned[0].about() == {"data": "training mix"}
    assert planned[2].about() == {"data": "reasoning", "init_from": "S"}
    assert Job("S", 2, 1, None, "chat").about() == {"data": "chat", "init_from": None}


def test_train_config_rounds_to_whole_batches_and_reads_diff_train_sae(diff_cfg):
    cfg = diff_cfg("sae.batch_size_tokens=64", "diff.train.sae.seed=7")
    tc = train_config(cfg, 32, 200, "/start")
    assert (tc.training_tokens, tc.seed, tc.d_sae, tc.init_from) == (192, 7, 32, "/start")
    assert train_config(cfg, 32, 10, None).training_tokens == 64  # at least one batch


def test_missing_saes_must_be_trainable_here(diff_cfg):
    cfg = diff_cfg("+diff.stagewise.saes.S=/s")
    assert missing(cfg, [1, 3], {"S": "/s", "L3": "/three"}) == Missing([1], ["SD"])
    with pytest.raises(UserError, match="no SAE given for SD and diff.train.enabled is false"):
        missing(diff_cfg("diff.train.enabled=false"), [], {"S": "/s"})
    with pytest.raises(UserError, match="stage D trains on source 'slim', which is not one of data.sources"):
        missing(diff_cfg("diff.stagewise.stages.D.source=slim"), [], {})


def test_given_saes_must_read_the_main_width_and_their_layer(tmp_path: Path):
    sae = random_sae(d_in=8, d_sae=4)
    sae.cfg.metadata["hook_layer"] = 3
    sae.save(tmp_path / "L3")
    assert set(load_all_given({"L3": str(tmp_path / "L3"), "S": str(tmp_path / "L3")}, 8, 3)) == {"L3", "S"}
    with pytest.raises(UserError, match="reads layer 3, not 1: give the SAE of layer 1"):
        load_all_given({"L1": str(tmp_path / "L3")}, 8, 3)
    with pytest.raises(UserError, match="reads width 8, the main SAE 16"):
        load_all_given({"S": str(tmp_path / "L3")}, 16, 3)
