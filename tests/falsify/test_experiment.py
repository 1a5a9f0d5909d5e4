"""The falsification end to end on a fake LM whose features are written by hand: feature 3 detects token 3 wherever
it is (a token detector), feature 30 fires on token 11 only right after token 7 (context-dependent: injecting 11
does nothing, ablating the 7 before it silences it), feature 12 detects token 12 and comes without triggers."""

import numpy as np
import pandas as pd
import pytest
import torch

from reasoning_sae.falsify import CONTEXT_DEPENDENT, TOKEN_DETECTOR, Settings, falsify, random_controls
from reasoning_sae.models.lm import LanguageModel
from tests.helpers import identity_sae

D, SEQ, WORD = 40, 64, 5
SETTINGS = Settings(triggers=2, sites=4, injections=4, ablation=4, window=(2, 3), batch_sequences=2, seed=3)


class FakeTokenizer:
    unk_token_id = None

    def __len__(self):
        return D

    def encode(self, text, add_special_tokens=False):
        return [WORD] if text == "w" else [0]

    def decode(self, ids):
        return "w" if list(ids) == [WORD] else " ".join(f"t{i}" for i in ids)

    def convert_ids_to_tokens(self, ids):
        return [f"Ġt{i}" for i in ids]


class FakeLM:
    """Activations: the one-hot of each token, plus dimension 30 where the previous token is 7."""

    device = torch.device("cpu")
    activation_cache = None

    def __init__(self):
        self.tokenizer, self.passes, self.rows = FakeTokenizer(), 0, 0

    def activations(self, ids_BS, hook):
        acts = torch.nn.functional.one_hot(ids_BS, D).float()
        acts[:, 1:, 30] += (ids_BS[:, :-1] == 7).float()
        self.rows += len(ids_BS)
        return acts

    def iter_activations(self, *args, **kwargs):
        self.passes += 1
        yield from LanguageModel.iter_activations(self, *args, **kwargs)


def texts(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    reasoning = rng.integers(12, 26, size=(4, SEQ))
    for p in range(6, SEQ - 6, 12):
        reasoning[:, p : p + 4] = [WORD, 3, 7, 11]  # the word, feature 3's token in its window, 11 after 7
    return reasoning, rng.integers(31, 40, size=(3, SEQ))


def run(lm=None):
    reasoning, chat = texts()
    return falsify(lm or FakeLM(), identity_sae(D), reasoning, chat, {3: "F_R", 30: "F_R", 12: "random"},
                   {3: [3], 30: [11]}, ["w"], SETTINGS, sink_positions=1, hook="blocks.0.hook_resid_post")


def test_a_token_detector_and_a_context_feature_are_told_apart():
    lm = FakeLM()
    result = run(lm)
    by = {r.feature: r for r in result.results}
    assert [r.feature for r in result.results] == [3, 30, 12] and by[12].group == "random"
    detector, context, control = by[3], by[30], by[12]
    assert detector.verdict == TOKEN_DETECTOR and detector.triggers == (3,)
    assert detector.injected_mean == pytest.approx(1 / 6) and detector.baseline_mean == 0
    assert detector.reasoning_mean == pytest.approx(1 / 6) and detector.ratio == pytest.approx(1)
    assert detector.injected_sites >= SETTINGS.sites
    assert context.verdict == CONTEXT_DEPENDENT and context.injected_mean == 0
    assert context.context_mean > 0 and context.ablated_mean == 0 and context.ablated_sites >= SETTINGS.sites
    assert context.reasoning_mean == pytest.approx(1 / 6)
    assert control.triggers == (12,) and control.verdict == TOKEN_DETECTOR  # its triggers from the reasoning pass
    # one pass over the reasoning text, one over chat + injected + ablated: never one per feature
    assert lm.passes == 2 and lm.rows * SEQ == sum(result.tokens.values())
    assert result.tokens["reasoning"] == 4 * SEQ and result.tokens["chat"] == 3 * SEQ
    assert run().results == result.results  # seeded


def test_controls_keep_the_first_features_that_fire():
    reasoning, chat = texts()
    groups = {3: "F_R", 33: "random", 12: "random", 14: "random", 15: "random"}  # 33 never fires in reasoning
    result = falsify(FakeLM(), identity_sae(D), reasoning, chat, groups, {3: [3]}, ["w"],
                     SETTINGS._replace(controls=2), sink_positions=1, hook="blocks.0.hook_resid_post")
    assert [(r.feature, r.group) for r in result.results] == [(3, "F_R"), (12, "random"), (14, "random")]


def test_random_controls_are_drawn_outside_f_r_among_features_that_fire():
    table = pd.DataFrame({"mean_pos": [0.1, 0.0, 0.2, 0.0, 0.3], "mean_neg": [0.0, 0.0, 0.1, 0.2, 0.0]})
    drawn = random_controls(table, exclude=[0], n=10, seed=1)
    assert sorted(drawn) == [2, 3, 4]
    assert random_controls(table, [0], 2, seed=1) == random_controls(table, [0], 2, seed=1)
    assert len(random_controls(table.drop(columns="mean_neg"), [0], 10, seed=1)) == 4  # no columns: any feature
