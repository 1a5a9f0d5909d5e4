import json

import pandas as pd
from omegaconf import OmegaConf

from reasoning_sae.falsify import FeatureResult, to_frame
from reasoning_sae.figures.common import Artifacts
from reasoning_sae.figures.falsify import falsification
from tests.helpers import stage


def result(feature: int, group: str, verdict: str, reasoning: float, injected: float) -> FeatureResult:
    return FeatureResult(feature, group, (5,), reasoning, 0.0, injected, 0.4, 0.1, injected / reasoning, 2.0, 1e-4, 6,
                         3, verdict)


def test_the_falsification_figure_draws_every_feature_and_states_the_shares(tmp_path):
    root = tmp_path / "artifacts" / "demo"
    results = [result(1, "F_R", "token_detector", 0.3, 0.25), result(2, "F_R", "context_dependent", 0.2, 0.0),
               result(3, "F_R", "token_sensitive", 0.4, 0.05), result(4, "random", "token_detector", 0.01, 0.2),
               result(5, "random", "untested", 0.1, 0.0)]
    path = stage(root, "falsify", {"falsify": {"share": 0.5, "ablation": 16}},
                 {"rule": "token_detector: Cohen's d >= 0.8 ... (ours)"})
    to_frame(results, str).to_csv(path / "falsify.csv", index=False)
    item = falsification(Artifacts(root), tmp_path / "out", OmegaConf.create({}))
    assert item.status == "ok" and item.label == "Beyond 1" and item.title == "Token-injection falsification of F_R"
    assert all((tmp_path / "out" / f).is_file() for f in item.files) and "figures/falsify.png" in item.files
    assert item.ours["F_R detector share"] == 1 / 3 and item.ours["random detector share"] == 1.0
    assert item.ours["random tested"] == 1
    assert "33% are token detectors" in item.markdown and "| F_R | 3 | 3 | 1 (33%) | 1 | 1 | 75% |" in item.markdown
    assert "Cohen's d >= 0.8" in item.notes[0] and "run_token_injection_experiment.py" in item.notes[0]
    drawn = json.loads((tmp_path / "out" / "figures" / "falsify.json").read_text())
    assert len(drawn["features"]) == 5 and drawn["groups"]["random"]["untested"] == 1
    assert pd.read_csv(path / "falsify.csv")["verdict"].tolist() == [r.verdict for r in results]


def test_without_the_falsify_stage_the_item_is_not_run(tmp_path):
    item = falsification(Artifacts(tmp_path / "artifacts" / "demo"), tmp_path / "out", OmegaConf.create({}))
    assert item.status == "not run" and "python -m reasoning_sae falsify" in item.reason and not item.files
