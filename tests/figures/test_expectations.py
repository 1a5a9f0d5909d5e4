"""A committed run's numbers with tolerances from reruns (figures/expectations.py): written from fixture artifacts,
then `verify` passes on a run within them and fails, one readable line per number, on one outside."""

import shutil

import pandas as pd
import pytest
import yaml

from reasoning_sae.artifacts import write_json
from reasoning_sae.figures import expectations
from reasoning_sae.figures.common import Artifacts
from reasoning_sae.figures.verify import verify
from tests.helpers import make_artifacts


@pytest.fixture
def committed(tmp_path, monkeypatch, run_figures):
    """A demo run, a rerun whose numbers moved a little, and the expectations written from the two."""
    monkeypatch.setattr(expectations, "EXPECTED_DIR", tmp_path / "expected")
    root = make_artifacts(tmp_path / "artifacts" / "demo")
    run_figures()
    rerun = tmp_path / "artifacts" / "demo_seed1"
    shutil.copytree(root, rerun)
    results = pd.read_csv(rerun / "evaluate" / "results.csv")
    results.loc[results["metric"] == "think_tokens", "value"] += 4.0
    results.to_csv(rerun / "evaluate" / "results.csv", index=False)
    write_json(rerun / "train" / "metrics.json", {"metrics/l0": 13.5, "metrics/explained_variance": 0.68})
    art = Artifacts(root)
    paths = expectations.write("demo", art, {"demo_seed1": Artifacts(rerun)}, expectations.run_settings(art), "test")
    return root, tmp_path / "expected" / "demo", paths


def test_expectations_carry_values_and_measured_tolerances(committed):
    _, folder, paths = committed
    assert {p.stem for p in paths} == {"sae_quality", "reasonscore", "vocabulary", "table1", "table2", "table3"}
    quality = yaml.safe_load((folder / "sae_quality.yaml").read_text())
    assert quality["l0"]["value"] == 12.5 and quality["l0"]["tolerance"]["abs"] == 2.0  # 2 x |13.5 - 12.5|
    assert "demo_seed1 1" in quality["l0"]["tolerance"]["why"]
    table1 = yaml.safe_load((folder / "table1.yaml").read_text())["table"]
    assert [r[0] for r in table1["rows"]] == ["No steering", "F_R #1 γ=2", "F_R #2 γ=2"]  # ranks, not ids
    assert table1["tolerance"]["reasoning_demo tokens"]["abs"] == 8.0
    assert table1["tolerance"]["reasoning_demo pass@1 (%)"]["abs"] == 25.0  # no spread: one sample of 2 x 2
    score = yaml.safe_load((folder / "reasonscore.yaml").read_text())
    assert score["f_r"]["features"] == [11, 3, 7, 5, 2, 9] and score["f_r"]["min_overlap"] == 1.0


def test_verify_passes_within_and_fails_outside_the_tolerances(committed, tmp_path):
    root, folder, _ = committed
    result = verify(root, tmp_path / "paper")
    assert result.failures == [] and "committed numbers reproduced against paper/expected/demo" in result.notes

    table1 = yaml.safe_load((folder / "table1.yaml").read_text())
    row = next(r for r in table1["table"]["rows"] if r[0] == "F_R #1 γ=2")
    column = table1["table"]["columns"].index("reasoning_demo tokens")
    row[column] += 8.5  # pushed just outside ± 8
    (folder / "table1.yaml").write_text(yaml.safe_dump(table1, allow_unicode=True))
    quality = yaml.safe_load((folder / "sae_quality.yaml").read_text())
    quality["l0"]["value"] = 10.0
    (folder / "sae_quality.yaml").write_text(yaml.safe_dump(quality))
    result = verify(root, tmp_path / "paper")
    assert result.failures == [
        "paper/expected/demo/sae_quality.yaml l0: committed 10 ± 2, this run 12.5 (Δ +2.5): outside the tolerance",
        "paper/expected/demo/table1.yaml row 'F_R #1 γ=2', column 'reasoning_demo tokens': committed 158.5 ± 8, this "
        "run 150 (Δ -8.5): outside the tolerance"]
    assert "2 committed numbers outside their tolerances against paper/expected/demo" in result.notes


def test_reordered_features_fail_below_the_overlap(committed, tmp_path):
    root, folder, _ = committed
    score = yaml.safe_load((folder / "reasonscore.yaml").read_text())
    score["f_r_top10"]["features"] = [11, 3, 40, 41, 42, 43]
    (folder / "reasonscore.yaml").write_text(yaml.safe_dump(score))
    failures = verify(root, tmp_path / "paper").failures
    assert failures == ["paper/expected/demo/reasonscore.yaml f_r_top10: overlap 0.33 with the committed set, below 1.0"]


def test_a_run_of_another_model_is_not_compared(committed, tmp_path):
    root, folder, _ = committed
    for path in folder.glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        data["settings"]["model"] = "smollm2-135m-instruct"
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
    result = verify(root, tmp_path / "paper")
    assert result.failures == []
    assert any("holds a run of smollm2-135m-instruct, this one is of tiny-model: not compared" in n
               for n in result.notes)


def test_the_cli_writes_and_checks(committed, tmp_path, capsys):
    root, _, _ = committed
    args = ["--artifacts", str(root.parent)]
    assert expectations.main(["check", "demo", *args]) == 0
    assert "this run reproduced the committed results: all" in capsys.readouterr().out
    assert expectations.main(["write", "demo", *args]) == 2
    assert "error: give --spread" in capsys.readouterr().err
    assert expectations.main(["check", "nothing", *args]) == 2


def test_make_expectations_reruns_four_ways_then_writes():
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    plan = subprocess.run(["make", "-n", "-o", ".venv/.setup-done", "expectations"], capture_output=True, text=True,
                          cwd=repo, check=True).stdout
    assert plan.count("-m reasoning_sae reproduce experiment=demo") == 5
    for run in ("seed=1 sae.seed=1", "seed=2 sae.seed=2", "OMP_NUM_THREADS=1", "ATEN_CPU_CAPABILITY=avx2"):
        assert run in plan, run
    assert ("-m reasoning_sae.figures.expectations write demo --spread demo_seed1 --spread demo_seed2 --spread "
            "demo_threads1 --spread demo_avx2") in plan


def test_feature_overlap_is_measured_on_reruns_of_the_same_sae_seed_only(committed, tmp_path):
    root, folder, _ = committed
    other_seed = tmp_path / "artifacts" / "demo_seed2"
    shutil.copytree(root, other_seed)
    (other_seed / "train" / "config.yaml").write_text("sae:\n  seed: 2\n")
    top = other_seed / "score" / "top_features.json"
    top.write_text(top.read_text().replace("[\n    11,", "[\n    39,"))  # another SAE: its ids name other latents
    art = Artifacts(root)
    expectations.write("demo", art, {"demo_seed1": Artifacts(tmp_path / "artifacts" / "demo_seed1"),
                                     "demo_seed2": Artifacts(other_seed)}, expectations.run_settings(art), "test")
    score = yaml.safe_load((folder / "reasonscore.yaml").read_text())
    assert score["f_r"]["min_overlap"] == 1.0 and "demo_seed2" not in score["f_r"]["why"]
