import math
from dataclasses import fields

import pytest
from omegaconf import OmegaConf

from reasoning_sae import UserError
from reasoning_sae.models.config import conf_dir
from reasoning_sae.settings import _kind
from reasoning_sae.train.config import TrainConfig

NUMERIC = [f for f in fields(TrainConfig) if _kind(f.type)[0] in (int, float)]


@pytest.mark.parametrize("field", NUMERIC, ids=lambda f: f.name)
def test_every_numeric_setting_refuses_text_nan_and_negative_numbers(field):
    for bad in ("abc", "1e-3", float("nan"), float("inf"), -1, True):
        with pytest.raises(UserError, match=rf"^sae\.{field.name}=.*: give a (finite|whole) number") as err:
            TrainConfig.from_mapping({field.name: bad})
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("field", [f for f in fields(TrainConfig) if f not in NUMERIC], ids=lambda f: f.name)
def test_every_other_setting_refuses_a_number(field):
    with pytest.raises(UserError, match=rf"sae\.{field.name}"):
        TrainConfig.from_mapping({field.name: 3})


def test_numbers_are_read_as_their_settings_type():
    tc = TrainConfig.from_mapping({"lr": 1, "training_tokens": 1e6, "d_sae": None, "l1_coefficient": 0})
    assert tc.lr == 1.0 and isinstance(tc.lr, float) and tc.training_tokens == 1_000_000
    assert isinstance(tc.training_tokens, int) and tc.l1_coefficient == 0.0


@pytest.mark.parametrize(("values", "message"), [
    ({"lr": 0}, r"^sae.lr=0: give a finite number > 0 \(default: 5e-05\)$"),
    ({"adam_beta2": 1.0}, r"^sae.adam_beta2=1.0: give a finite number in \[0, 1\) \(default: 0.999\)$"),
    ({"d_sae": 0}, r"^sae.d_sae=0: give a whole number >= 1 or null \(default: null\)$"),
    ({"init": "xavier"}, r"^unknown sae.init 'xavier': use one of fixed, paper$"),
    ({"apply_b_dec_to_input": "no"}, r"^sae.apply_b_dec_to_input='no': give true or false \(default: false\)$"),
])
def test_messages_name_the_setting_and_what_to_give(values, message):
    with pytest.raises(UserError, match=message):
        TrainConfig.from_mapping(values)


@pytest.mark.parametrize("path", sorted(conf_dir().glob("sae/*.yaml")), ids=lambda p: p.stem)
def test_the_shipped_sae_configs_pass(path):
    values = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    values.pop("defaults", None)
    base = OmegaConf.to_container(OmegaConf.load(conf_dir() / "sae" / "paper.yaml"), resolve=True)
    tc = TrainConfig.from_mapping({**base, **values})
    assert math.isfinite(tc.lr) and tc.lr > 0
