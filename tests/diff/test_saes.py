"""The diffing SAEs' commands: planned from the diff config, in order, skipping the SAEs already there."""

import pytest

from reasoning_sae.diff.saes import main, plan
from reasoning_sae.errors import UserError
from tests.helpers import random_sae


@pytest.fixture
def artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("REASONING_SAE_ARTIFACTS", str(tmp_path))
    return tmp_path


def test_the_paper_plan_trains_layers_then_trajectories_after_their_prefixes(artifacts):
    steps = plan(["experiment=paper", "trainer=gpu"])
    assert [s.what for s in steps] == [
        "the experiment's corpus", *(f"layer {layer} SAE" for layer in (13, 15, 17, 21, 23)),
        "stage S corpus", "trajectory S SAE", "stage D corpus", "trajectory SD SAE", "stage M corpus",
        "trajectory SM SAE", "stage F corpus", "trajectory SDF SAE", "trajectory SMF SAE"]
    by_name = {s.what: s.args for s in steps}
    assert by_name["layer 13 SAE"][-2:] == ("model.layer=13", f"job_dir={artifacts}/paper/layers/L13")
    sdf = by_name["trajectory SDF SAE"]
    assert "experiment_name=paper-diff-F" in sdf and "model=deepseek-r1-distill-llama-8b" in sdf
    assert "data.sources.reasoning.fraction=1.0" in sdf and "data.sources.slimpajama.fraction=0.0" in sdf
    assert f"sae.init_from={artifacts}/paper-diff-SD/train/sae" in sdf and "sae.training_tokens=300000000" in sdf
    assert f"job_dir={artifacts}/paper-diff-SDF" in sdf and "model.layer=19" in sdf
    s = by_name["trajectory S SAE"]
    assert "model=llama-3.1-8b" in s and "data.sources.slimpajama.fraction=1.0" in s
    assert not any(a.startswith(("sae.init_from", "sae.training_tokens")) for a in s)


def test_saes_already_there_are_not_trained_again(artifacts):
    for path in (artifacts / "paper/layers/L13/train/sae", artifacts / "paper-diff-S/train/sae"):
        random_sae(d_in=8, d_sae=4).save(path)
    names = [s.what for s in plan(["experiment=paper"])]
    assert "layer 13 SAE" not in names and "trajectory S SAE" not in names and "trajectory SD SAE" in names


def test_bad_diff_configs_are_one_line(artifacts, capsys):
    with pytest.raises(UserError, match=r"reads source 'web', which is not one of data.sources"):
        plan(["experiment=paper", "diff.stagewise.stages.S.source=web"])
    with pytest.raises(UserError, match=r"does not end in train/sae"):
        plan(["experiment=paper", "diff.stagewise.saes.S=/somewhere/else"])
    assert main(["experiment=paper", "diff.stagewise.stages.S.source=web", "--dry-run"]) == 2
    assert capsys.readouterr().err.startswith("error: a diff stage reads source 'web'")


def test_dry_run_prints_the_commands_and_runs_nothing(artifacts, capsys):
    assert main(["experiment=paper", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 15 and out[0] == "[1/15] the experiment's corpus: python -m reasoning_sae corpus experiment=paper"
    assert not any(artifacts.iterdir())
