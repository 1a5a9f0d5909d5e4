"""The diff block of the config: what it names, the layers it picks, the feature sets and what a run leaves out."""

import logging

import pytest

from reasoning_sae.diff.config import (config_key, crosslayer_layers, feature_sets, given_saes, label, left_out,
                                       stage_model, trajectories)
from reasoning_sae.errors import UserError


@pytest.fixture
def diff_cfg(compose):
    return lambda *overrides: compose("diff", overrides)


def test_labels_and_config_keys():
    assert (label("SDF"), label("S"), label("")) == ("S->D->F", "S", "")
    assert (config_key("L13"), config_key("SD")) == ("diff.crosslayer.saes.13", "diff.stagewise.saes.SD")


def test_layers_given_or_offsets_inside_the_model(diff_cfg):
    assert crosslayer_layers(diff_cfg("diff.crosslayer.layers=[3,1]"), 2, None) == [3, 1]
    offsets = diff_cfg("diff.crosslayer.offsets=[-4,-2,0,2,4]")
    assert crosslayer_layers(offsets, 2, 5) == [0, 4] and crosslayer_layers(offsets, 2, None) == [0, 4, 6]


def test_given_saes_only_for_the_trajectories_and_layers_used(diff_cfg):
    cfg = diff_cfg("+diff.stagewise.saes.S=/s", "+diff.stagewise.saes.SM=/sm", "+diff.crosslayer.saes.1=/one",
                   "+diff.crosslayer.saes.3=/three", "diff.crosslayer.layers=[3]")
    assert given_saes(cfg) == {"S": "/s", "L3": "/three"}
    assert set(given_saes(diff_cfg("+diff.crosslayer.saes.1=/one"))) == {"L1"}  # layers null: every one named
    assert trajectories(diff_cfg("diff.stagewise.trajectories=null")) == []


def test_stage_model_is_the_experiments_unless_named(diff_cfg):
    cfg = diff_cfg("diff.stagewise.stages.D.model=llama-3.1-8b")
    assert stage_model(cfg, "D") == "meta-llama/Llama-3.1-8B" and stage_model(cfg, "S") == cfg.model.name


def test_feature_sets_take_what_the_sae_offers_and_check_the_chosen_set(diff_cfg, caplog):
    with caplog.at_level(logging.WARNING):
        sets = feature_sets(diff_cfg("diff.random_features=10"), 12, [0, 1, 2, 3, 4])
    assert "10 random features asked for, 7 outside F_R" in caplog.text
    assert len(sets.random) == 7 and not set(sets.random) & {0, 1, 2, 3, 4}
    assert sets.chosen == sets.random and sets.name == "random" and sets.f_r == [0, 1, 2, 3, 4]
    chosen = feature_sets(diff_cfg("diff.random_features=2", "diff.features=[5,1]"), 12, [0])
    assert (chosen.chosen, chosen.name, len(chosen.random)) == ([5, 1], "chosen set", 2)
    with pytest.raises(UserError, match="feature id 12 is out of range"):
        feature_sets(diff_cfg("diff.features=[12]"), 12, [0])


def test_left_out_names_the_missing_axis_trajectories_and_scale(diff_cfg):
    notes, sentence = left_out(diff_cfg(), {"S": {"training_tokens": 640}}, 2, [1, 3], 5000)
    assert notes[0].startswith("the base-model vs reasoning-model axis") and "S->M, S->D->F, S->M->F" in notes[1]
    assert "S are trained here on 640 tokens of 48 cached sequences against the main SAE's 5000" in notes[2]
    assert sentence.startswith("The `diff` stage runs stage-wise diffing along S, S->D (S: chat data; D: reasoning "
                               "data; fine-tunes take 30% of the tokens) and cross-layer matching of layer 2 against "
                               "layers 1, 3; it leaves out the base-model")
