"""The scored-explanations table (detection, fuzzing) from the autointerp stage's scores, and not run without them."""

import json

import pytest
from omegaconf import OmegaConf

from reasoning_sae.figures.autointerp_scores import NOT_SCORED, explanation_scores
from reasoning_sae.figures.common import NOT_RUN, Artifacts, parse_markdown_table
from reasoning_sae.figures.groups import AUTOINTERP_MISSING
from tests.helpers import autointerp_scores_stage, make_artifacts

OPTS = OmegaConf.create({})


def test_not_run_without_the_autointerp_stage_or_its_scores(tmp_path):
    bare = make_artifacts(tmp_path / "bare", optional=False)
    item = explanation_scores(Artifacts(bare), tmp_path / "out", OPTS)
    assert (item.status, item.reason, item.label) == (NOT_RUN, AUTOINTERP_MISSING, "Beyond 2")
    unscored = make_artifacts(tmp_path / "unscored")
    item = explanation_scores(Artifacts(unscored), tmp_path / "out", OPTS)
    assert (item.status, item.reason) == (NOT_RUN, NOT_SCORED) and not (tmp_path / "out").exists()


def test_a_table_per_feature_and_per_group(tmp_path):
    root = make_artifacts(tmp_path / "demo")
    autointerp_scores_stage(root)
    out = tmp_path / "out"
    item = explanation_scores(Artifacts(root), out, OPTS)
    assert item.status == "ok" and item.title == "Scored explanations (detection, fuzzing)"
    assert item.files == ["tables/explanation_scores.md", "tables/explanation_scores.tex",
                          "tables/explanation_scores_groups.md", "tables/explanation_scores_groups.tex"]
    assert all((out / f).is_file() for f in item.files)
    features = parse_markdown_table(item.markdown)
    assert features.columns.tolist() == ["Feature", "Description", "Detection bal. acc. %", "Detection F1 %",
                                         "Fuzzing bal. acc. %", "Fuzzing F1 %", "n"]
    assert features.iloc[0].tolist() == ["11", "feature 11 | checks steps", "100.0", "100.0", "100.0", "100.0",
                                         "4 / 4"]
    assert features.iloc[1, 2:4].tolist() == ["75.0", "80.0"]  # tpr 1, tnr 1/2; precision 2/3, recall 1
    assert features.iloc[2].tolist()[2:] == ["50.0", "66.7", "–", "–", "4 / 0"]  # fuzzing not run for 7
    groups = parse_markdown_table(item.markdown.split("\n\n")[1])  # the second table
    assert groups["Group"].tolist() == ["Self-Correction", "Other Behavior", "All features"]
    assert groups.iloc[0, 3] == "87.5" and groups.iloc[2, 3] == "75.0" and groups.iloc[2, 5] == "87.5"
    assert item.ours == {"n_features": 3, "explainer": "fake-llm", "detection": 0.75, "fuzzing": 0.875}
    assert "balanced accuracy 50% is chance" in (out / "tables" / "explanation_scores.md").read_text()
    assert json.loads(json.dumps(item.to_dict()))["key"] == "explanation_scores"


@pytest.mark.parametrize("column", ["detection_n", "fuzzing_n"])
def test_a_method_that_labelled_nothing_is_left_out(tmp_path, column):
    root = make_artifacts(tmp_path / "demo")
    frame = autointerp_scores_stage(root)
    frame[column] = 0
    frame.to_csv(root / "autointerp" / "scores.csv", index=False)
    table = parse_markdown_table(explanation_scores(Artifacts(root), tmp_path / "out", OPTS).markdown)
    left = column.removesuffix("_n").capitalize()
    assert not any(c.startswith(left) for c in table.columns) and len(table.columns) == 5
