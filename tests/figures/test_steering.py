"""Tables 1-2 with their uncertainty (figures/steering.py, figures/intervals.py): an interval beside every accuracy and
thinking length, each row's paired difference from the unsteered row with its test, and the report's statement of
which differences are distinguishable from noise, computed from the evaluate stage's per-attempt records."""

import re

import pandas as pd
import pytest

from reasoning_sae.errors import UserError
from reasoning_sae.figures import steering
from reasoning_sae.figures.common import Artifacts, parse_markdown_table
from tests.helpers import make_artifacts, seal

CI = "95% CI"


def interval(text: str) -> tuple[float, float]:
    low, high = re.fullmatch(r"\[(\S+), (\S+)\]", text).groups()
    return float(low), float(high)


def tables(path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The table and its differences, from tables/<key>.md."""
    main, differences = path.read_text().split("**Differences from")
    return parse_markdown_table(main).set_index(""), parse_markdown_table(differences)


@pytest.fixture
def opts(compose):
    return lambda *overrides: compose("figures", overrides).figures


def test_every_number_has_its_interval_beside_it_and_every_row_its_difference(tmp_path, opts):
    root = make_artifacts(tmp_path / "artifacts" / "demo", optional=False)
    item = steering.table1(Artifacts(root), tmp_path, opts())
    table, differences = tables(tmp_path / "tables" / "table1.md")
    whole = parse_markdown_table((tmp_path / "tables" / "table1.md").read_text())  # what verify reads: the table only
    assert whole.equals(table.reset_index()) and list(table.index) == ["No steering", "#11 γ=2", "#3 γ=2"]
    columns = list(table.columns)
    numbers = [c for c in columns if not c.endswith(CI)]
    assert numbers == [f"reasoning_demo {c}" for c in ("maj@2 (%)", "pass@1 (%)", "tokens", "words/1k")]
    for column in numbers[:3]:  # accuracy and length: the interval right after the number; words per 1k: none
        assert columns[columns.index(column) + 1] == f"{column} {CI}"
        for row in table.index:
            low, high = interval(table.loc[row, f"{column} {CI}"])
            assert low <= float(table.loc[row, column]) <= high, (row, column)
    assert f"{numbers[3]} {CI}" not in columns
    assert table.loc["#11 γ=2", f"reasoning_demo maj@2 (%) {CI}"] == "[100.0, 100.0]"  # every problem voted right
    low, high = interval(table.loc["No steering", f"reasoning_demo tokens {CI}"])
    assert 90 < low < 100 < high < 110  # answers of 90-110 tokens

    assert list(differences.columns) == ["", "task", "metric", "Δ vs No steering", CI, "p", "distinguishable"]
    assert differences[""].tolist() == ["#11 γ=2"] * 3 + ["#3 γ=2"] * 3
    tokens = differences.set_index(["", "metric"]).loc[("#11 γ=2", "tokens")]
    assert tokens["Δ vs No steering"] == "+50.0" and interval(tokens[CI])[0] > 0
    assert tokens["p"] == "0.500" and tokens["distinguishable"] == "no"  # 2 problems: the exact test cannot tell
    tex = (tmp_path / "tables" / "table1.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 2 and r"\label{tab:table1-differences}" in tex
    assert r"$\Delta$ vs No steering" in tex and r"\#11 $\gamma$=2 & 100.0 & [100.0, 100.0] & 50.0" in tex
    assert item.ours["intervals"] == {"resamples": 1000, "level": 0.95, "seed": 0}
    assert item.ours["distinguishable"] == "0 of 6 differences"

    steering.table2(Artifacts(root), tmp_path, opts())
    table2, differences2 = tables(tmp_path / "tables" / "table2.md")
    assert table2.loc["Random (mean of 2)", "reasoning_demo pass@1 (%)"] == "37.5"  # the draws' answers pooled
    assert differences2[""].tolist() == ["Reason (ban R)"] * 3 + ["Random (mean of 2)"] * 3

    narrow = steering.table1(Artifacts(root), tmp_path / "narrow", opts("figures.uncertainty.level=0.5"))
    half = parse_markdown_table(narrow.markdown).set_index("")
    low50, high50 = interval(half.loc["No steering", "reasoning_demo tokens 50% CI"])
    assert low < low50 < high50 < high


@pytest.mark.parametrize("steered_tokens_k, said, flag", [
    (0.15, r"1 of 3 differences from No steering: #11 γ=2 on reasoning_demo tokens \+50\.0 \[\+4\d\.\d, \+5\d\.\d\] "
           r"\(p = 0\.00\d\)\. The other 2 are not, every accuracy difference among them\.", "yes"),
    (0.10, r"none of the 3 differences from No steering\.", "no")])
def test_the_report_says_what_the_data_tell_apart_from_noise(run_figures, tmp_path, steered_tokens_k, said, flag):
    # 12 problems: the steered row thinks 50 tokens longer on every one of them, or exactly as long
    make_artifacts(tmp_path / "artifacts" / "demo", optional=False, problems=12,
                   rows={"no_steering": [50.0, 0.1], 11: [50.0, steered_tokens_k]})
    run_figures("figures.examples=1")
    report = (tmp_path / "paper" / "REPORT.md").read_text()
    section = report.split("## Table 1:")[1].split("\n## ")[0]
    assert re.search(re.escape("**Distinguishable from noise at this scale** (reasoning_demo: 12 problems × 2 samples "
                               "per cell; a difference counts when its 95% paired bootstrap interval excludes 0 and "
                               "the paired sign-flip test gives p < 0.05): ") + said + "\n", section)
    _, differences = tables(tmp_path / "paper" / "tables" / "table1.md")
    assert differences.set_index("metric").loc["tokens", "distinguishable"] == flag
    assert "**Uncertainty.** Every accuracy and thinking length in Tables 1-2 comes with its 95%" in report
    assert "(1000\nresamples, seed 0;" in report


def test_the_paper_experiment_shows_our_interval_beside_the_papers_point(run_figures, tmp_path):
    from reasoning_sae.figures.common import PAPER_MODEL_ID
    from reasoning_sae.paper_expected import load_expected
    from tests.helpers import PAPER_SAE, PAPER_TASKS

    expected = load_expected("table1")["table"]
    rows = {row[0]: row[1:] for row in expected["rows"]}
    make_artifacts(tmp_path / "artifacts" / "paper", optional=False, l0=86.0, tasks=PAPER_TASKS, rows=rows,
                   maj="maj@4", model=PAPER_MODEL_ID, sae=PAPER_SAE)
    run_figures("experiment_name=paper", "figures.examples=1", "figures.paper=true")
    section = (tmp_path / "paper" / "REPORT.md").read_text().split("## Table 1:")[1].split("\n## ")[0]
    beside = parse_markdown_table(section.split("**Ours beside the paper's points**")[1].split("\n\n")[1])
    assert list(beside.columns) == ["row", "quantity", "paper", "ours", f"ours {CI}", "paper inside"]
    no_steering = beside[beside["row"] == "no_steering"].set_index("quantity")
    assert no_steering.loc["aime2024_maj4", ["paper", "ours"]].tolist() == ["53.3", "53.3"]  # the paper's, unchanged
    assert no_steering.loc["aime2024_maj4", "paper inside"] == "yes"
    assert len(beside) == sum(v is not None for row in expected["rows"] for v in row[1:])
    assert load_expected("table1")["table"] == expected


def test_records_missing_or_unlike_the_results_are_one_line_errors(tmp_path, opts):
    root = make_artifacts(tmp_path / "artifacts" / "demo", optional=False)
    with pytest.raises(UserError, match=r"^figures.uncertainty.resamples=50: give a whole number >= 100$"):
        steering.table1(Artifacts(root), tmp_path, opts("figures.uncertainty.resamples=50"))
    records = root / "evaluate" / "attempts.parquet"
    frame = pd.read_parquet(records)
    frame.loc[frame["label"] == "f11_g2", "think_tokens"] += 1.0
    frame.to_parquet(records, index=False)
    seal(root)
    with pytest.raises(UserError, match=r"^evaluate/attempts.parquet does not hold evaluate/results.csv's cells "
                                        r"\(#11 γ=2, reasoning_demo tokens: mean 151, results.csv 150\): rerun the "
                                        r"evaluate stage$"):
        steering.table1(Artifacts(root), tmp_path, opts())
    records.unlink()
    with pytest.raises(UserError, match=r"^no evaluate artifact at .*attempts.parquet: run the evaluate stage first"):
        steering.table2(Artifacts(root), tmp_path, opts())


def test_table1_notes_how_often_each_forcing_cell_forced(tmp_path):
    import json

    long = pd.DataFrame([{"task": "t", "label": "force-4", "row": steering.FORCING_ROW, "metric": "pass@1",
                          "value": 0.5}])
    cell = tmp_path / "evaluate-cells" / "t" / "force-4-0123456789ab"
    cell.mkdir(parents=True)
    record = {"label": "force-4", "metrics": {"t": {"pass@1": 0.5}}}
    (cell / "metrics.json").write_text(json.dumps(record))
    assert steering.forcing_notes(Artifacts(tmp_path), long) == []  # a cell written before the counts were kept
    record["budget_forcing"] = {"samples": 20, "forced_samples": 9, "forces": 10}
    (cell / "metrics.json").write_text(json.dumps(record))
    assert steering.forcing_notes(Artifacts(tmp_path), long) == [
        "t, force-4: budget forcing forced 9 of 20 samples (10 forces)"]
