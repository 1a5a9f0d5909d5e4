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
        "the experiment's corpus", "layer 13, 15, 17, 21, 23 SAEs, one pass",
        "stage S corpus", "trajectory S SAE", "stage D corpus", "trajectory SD SAE", "stage M corpus",
        "trajectory SM SAE", "stage F corpus", "trajectory SDF SAE", "trajectory SMF SAE"]
    by_name = {s.what: s.args for s in steps}
    assert by_name["layer 13, 15, 17, 21, 23 SAEs, one pass"][-3:] == (
        "model.layer=13", f"job_dir={artifacts}/paper/layers",
        "train.saes=[{name:L15,layer:15},{name:L17,layer:17},{name:L21,layer:21},{name:L23,layer:23}]")
    sdf = by_name["trajectory SDF SAE"]
    assert "experiment_name=paper-diff-F" in sdf and "model=deepseek-r1-distill-llama-8b" in sdf
    assert "data.sources.reasoning.fraction=1.0" in sdf and "data.sources.slimpajama.fraction=0.0" in sdf
    assert f"sae.init_from={artifacts}/paper-diff-SD/train/sae" in sdf and "sae.training_tokens=300000000" in sdf
    assert f"job_dir={artifacts}/paper-diff-SDF" in sdf and "model.layer=19" in sdf
    s = by_name["trajectory S SAE"]
    assert "model=llama-3.1-8b" in s and "data.sources.slimpajama.fraction=1.0" in s
    assert not any(a.startswith(("sae.init_from", "sae.training_tokens")) for a in s)


def test_saes_already_there_are_not_trained_again(artifacts):
    layers = ("diff.crosslayer.layers=[13,15]",)
    random_sae(d_in=8, d_sae=4).save(artifacts / "paper-diff-S/train/sae")
    random_sae(d_in=8, d_sae=4).save(artifacts / "paper/layers/train/sae")
    names = [s.what for s in plan(["experiment=paper", *layers])]
    assert "layer 13, 15 SAEs, one pass" in names  # L15 is missing: the pass trains both
    random_sae(d_in=8, d_sae=4).save(artifacts / "paper/layers/train/saes/L15/sae")
    names = [s.what for s in plan(["experiment=paper", *layers])]
    assert not any(n.startswith("layer") for n in names) and "trajectory S SAE" not in names
    assert "trajectory SD SAE" in names


def test_layers_in_run_directories_of_their_own_train_one_run_each(artifacts):
    steps = plan(["experiment=paper", "diff.crosslayer.layers=[13,15]",
                  f"diff.crosslayer.saes={{13:{artifacts}/a/train/sae,15:{artifacts}/b/train/sae}}"])
    assert [s.args[-2:] for s in steps if s.what.startswith("layer")] == [
        ("model.layer=13", f"job_dir={artifacts}/a"), ("model.layer=15", f"job_dir={artifacts}/b")]
    with pytest.raises(UserError, match=r"puts layers \[13, 15\] all at"):
        plan(["experiment=paper", "diff.crosslayer.layers=[13,15]",
              f"diff.crosslayer.saes={{13:{artifacts}/a/train/sae,15:{artifacts}/a/train/sae}}"])


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
    assert len(out) == 11 and out[0] == "[1/11] the experiment's corpus: python -m reasoning_sae corpus experiment=paper"
    assert not any(artifacts.iterdir())
