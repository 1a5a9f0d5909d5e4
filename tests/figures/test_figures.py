"""The figures stage on small fixture artifacts in the real schemas (no model runs): every figure and table renders,
the report, `verify` (consistent, tampered, paper comparison) and the errors for missing inputs."""

import json
from pathlib import Path

import pandas as pd
import pytest

from reasoning_sae import UserError
from reasoning_sae.figures.verify import verify
from reasoning_sae.figures.common import PAPER_MODEL_ID, parse_markdown_table
from tests.helpers import F_R, PAPER_SAE, PAPER_TASKS, make_artifacts


POINTS = [f"reasoning_demo {c}" for c in ("maj@2 (%)", "pass@1 (%)", "tokens", "words/1k")]


def image_ok(path: Path) -> bool:
    from matplotlib.image import imread

    head = path.read_bytes()[:4]
    if path.suffix == ".pdf":
        return head == b"%PDF" and path.stat().st_size > 1000
    image = imread(path)
    return head == b"\x89PNG" and image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50


def test_every_figure_and_table_renders_and_verifies(run_figures, tmp_path):
    root = make_artifacts(tmp_path / "artifacts" / "demo")
    out = run_figures()
    items = {i["key"]: i for i in json.loads((out / "items.json").read_text())}
    assert {k for k, i in items.items() if i["status"] == "ok"} == {
        "fig2", "fig3a", "fig3b", "fig4", "fig5", "fig6", "fig8a", "table1", "table2", "table3", "table4", "table5",
        "table6"}
    assert items["fig8b"]["status"] == "not run" and items["table7"]["status"] == "not run"  # 6 features, 2 problems
    paper = tmp_path / "paper"
    for item in items.values():
        for name in item["files"]:
            assert (out / name).read_bytes() == (paper / name).read_bytes()
            if name.endswith((".png", ".pdf")):
                assert image_ok(paper / name), name
    assert items["fig3a"]["ours"]["features"] == F_R[:4] and items["fig8a"]["ours"]["features"] == F_R[4:]

    table1 = (paper / "tables" / "table1.md").read_text()
    numbers = parse_markdown_table(table1).set_index("")[POINTS]  # the numbers, each followed by its interval
    assert numbers.to_dict("split")["data"] == [["50.0", "25.0", "100.0", "1.5"], ["100.0", "50.0", "150.0", "1.5"],
                                                ["0.0", "0.0", "90.0", "1.5"]]
    assert list(numbers.index) == ["No steering", "#11 γ=2", "#3 γ=2"]
    table2 = (paper / "tables" / "table2.md").read_text()
    numbers = parse_markdown_table(table2).set_index("")[POINTS]
    assert numbers.loc["Reason (ban R)"].iloc[0] == "0.0" and numbers.loc["Random (mean of 2)"].tolist()[:3] == [
        "75.0", "37.5", "115.0"]
    assert r"\#11 $\gamma$=2 & 100.0" in (paper / "tables" / "table1.tex").read_text()
    assert '"But"' in (paper / "tables" / "fig5.md").read_text()
    assert "| 1 | 33.3 | 16.7 | 50.0 | 70.0 | 10.0 | 20.0 |" in (paper / "tables" / "table3.md").read_text()
    assert "| Self-Correction | 11, 3 |" in (paper / "tables" / "table4.md").read_text()
    example = (paper / "tables" / "table5.md").read_text()  # steering fixed doc 1 (3 -> 2), shown first
    assert "What is 1 + 1?" in example and "\\boxed{2}" in example and "\\boxed{3}" in example
    assert json.loads((out / "figures" / "fig6.json").read_text())["F_R"] == len(F_R)

    report = (paper / "REPORT.md").read_text()
    for item in items.values():
        assert f"## {item['label']}:" in report
    assert "Not comparable with the paper" in report and "tiny-model" in report
    assert "figures/fig2.png" in report and "53.3" in report  # the paper's Table 1 beside ours

    result = verify(root, paper)
    assert result.failures == [] and result.checks > 50
    tampered = table1.replace("| #11 γ=2 | 100.0 |", "| #11 γ=2 | 90.0 |")
    (paper / "tables" / "table1.md").write_text(tampered)
    result = verify(root, paper)
    assert result.failures == [f"{paper / 'tables' / 'table1.md'}: sha256 differs from MANIFEST.sha256 (changed after "
                               f"it was written)",
                               f"{paper / 'tables' / 'table1.md'}: row '#11 γ=2', column 'reasoning_demo maj@2 (%)': "
                               f"expected 100.0 (from the evaluation cells' metrics.json), found 90.0"]


def test_verify_catches_results_that_no_cell_holds(run_figures, tmp_path):
    root = make_artifacts(tmp_path / "artifacts" / "demo", optional=False)
    run_figures()
    results = pd.read_csv(root / "evaluate" / "results.csv")
    results.loc[(results["label"] == "baseline") & (results["metric"] == "maj@2"), "value"] = 0.75
    results.to_csv(root / "evaluate" / "results.csv", index=False)
    failures = verify(root, tmp_path / "paper").failures
    assert any("evaluate/results.csv reasoning_demo/baseline: no cell" in f and "maj@2: results.csv 0.75, cell 0.5" in f
               for f in failures)


def test_optional_stages_absent_are_not_run_in_the_report(run_figures, tmp_path):
    root = make_artifacts(tmp_path / "artifacts" / "demo", optional=False)
    out = run_figures("figures.examples=1", "figures.features_per_panel=6")
    report = (out / "REPORT.md").read_text()
    for label in ("Fig. 3b", "Fig. 4", "Table 3", "Table 4"):
        section = report.split(f"## {label}:")[1].split("\n## ")[0]
        assert "**Not run:** the optional" in section, label
    assert verify(root, tmp_path / "paper").failures == []


def test_missing_required_artifact_names_the_stage(run_figures, tmp_path):
    root = make_artifacts(tmp_path / "artifacts" / "demo", optional=False)
    (root / "evaluate" / "meta.json").unlink()
    with pytest.raises(UserError, match=r"^no evaluate artifact at .*: run the evaluate stage first "
                                        r"\(python -m reasoning_sae evaluate\)$") as err:
        run_figures()
    assert "\n" not in str(err.value)
    assert not (root / "figures").exists() and not (tmp_path / "paper").exists()
    with pytest.raises(UserError, match="run the figures stage first"):
        verify(root)


def test_paper_experiment_is_checked_against_the_paper(run_figures, tmp_path):
    from reasoning_sae.paper_expected import load_expected

    rows = {row[0]: row[1:] for row in load_expected("table1")["table"]["rows"]}
    root = make_artifacts(tmp_path / "artifacts" / "paper", optional=False, l0=86.0, tasks=PAPER_TASKS, rows=rows,
                          maj="maj@4", model=PAPER_MODEL_ID, sae=PAPER_SAE)
    run_figures("experiment_name=paper", "figures.examples=1", "figures.paper=true")
    report = (tmp_path / "paper" / "REPORT.md").read_text()
    assert "Not comparable" not in report and "miniature" not in report and "Feature ids are this run's" not in report
    assert "andreuka18/deepseek-r1-distill-llama-8b-lmsys-openthoughts/blocks.19.hook_resid_post at commit c0ffeec0ffee" \
        in report
    row = next(line for line in (root / "figures" / "tables" / "table1.md").read_text().splitlines()
               if line.startswith("| #4395 γ=2 |"))
    assert row.startswith("| #4395 γ=2 | 56.7 |") and "| 14.7 |" in row and "| 95.4 |" in row  # tokens in K
    result = verify(root, tmp_path / "paper")  # Table 1, the headline claims and the SAE quality match
    assert result.failures == ["Fig. 6 |F_R|: paper 200 ± 4, ours 6: outside the tolerance"]
    assert "Table 3 not run" in " ".join(result.notes) or "not run (optional stages)" in " ".join(result.notes)

    results = pd.read_csv(root / "evaluate" / "results.csv")
    off = (results["label"] == "f4395_g2") & (results["task"] == "math500") & (results["metric"] == "maj@4")
    results.loc[off, "value"] = 0.90
    results.to_csv(root / "evaluate" / "results.csv", index=False)
    failures = verify(root, tmp_path / "paper").failures
    assert "Table 1 row 4395, math500_maj4: paper 95.4 ± 2.0, ours 90: outside the tolerance" in failures
    assert "headline abstract_accuracy (#4395, math500): paper 2.2 ± 2.0, ours -3.2: outside the tolerance" in failures


def test_a_paper_run_on_its_own_sae_compares_no_feature_ids(run_figures, tmp_path):
    from reasoning_sae.paper_expected import load_expected

    rows = {row[0]: row[1:] for row in load_expected("table1")["table"]["rows"]}
    rows = {("no_steering" if k == "no_steering" else 7 + i): v for i, (k, v) in enumerate(rows.items())}
    rows[7 + 1] = [0.0] * 6  # a feature of this SAE, far from any paper row: not compared
    root = make_artifacts(tmp_path / "artifacts" / "paper", optional=False, l0=86.0, tasks=PAPER_TASKS, rows=rows,
                          maj="maj@4", model=PAPER_MODEL_ID)
    run_figures("experiment_name=paper", "figures.examples=1", "figures.paper=true")
    assert "Feature ids are this run's" in (tmp_path / "paper" / "REPORT.md").read_text()
    result = verify(root, tmp_path / "paper")
    assert result.failures == ["Fig. 6 |F_R|: paper 200 ± 4, ours 6: outside the tolerance"]
    assert "Table 1's feature rows and the headline claims not compared" in " ".join(result.notes)


def test_a_miniature_of_the_paper_run_says_so_and_checks_itself_only(run_figures, tmp_path):
    root = make_artifacts(tmp_path / "artifacts" / "paper", sae=PAPER_SAE)
    run_figures("experiment_name=paper", "figures.paper=true")
    report = (tmp_path / "paper" / "REPORT.md").read_text()
    assert "**A miniature of the `paper` experiment.**" in report and "Not comparable" not in report
    result = verify(root, tmp_path / "paper")
    assert not result.failures and "a miniature of the paper run on tiny-model" in " ".join(result.notes)
