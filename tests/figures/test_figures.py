"""The figures stage on small fixture artifacts in the real schemas (no model runs): every figure and table renders,
the report, `verify` (consistent, tampered, paper comparison) and the errors for missing inputs."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reasoning_sae import UserError
from reasoning_sae.artifacts import write_json
from reasoning_sae.evaluate.cells import Cell
from reasoning_sae.evaluate.tables import results_frame
from reasoning_sae.figures.verify import verify
from reasoning_sae.manifest import write_manifest
from reasoning_sae.figures.common import PAPER_MODEL_ID
from reasoning_sae.stages import figures
from reasoning_sae.vocab.vocabulary import DEFAULT_VOCABULARY

F_R = [11, 3, 7, 5, 2, 9]          # best first
D_SAE = 40
PAPER_TASKS = ("aime24_nofigures", "math500", "gpqa_diamond_openai")


def stage(root: Path, name: str, config: dict | None = None, summary: dict | None = None) -> Path:
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / "meta.json", {"stage": name, "fingerprint": name, "created": "2026-01-01T00:00:00",
                                    "seconds": 1.0, "git_commit": "abc", "summary": summary or {}})
    (path / "config.yaml").write_text(json.dumps(config or {}))  # JSON is YAML
    return path


def vocab_stage(root: Path) -> None:
    words = ["wait", "hmm", "the", "let", "maybe", "of", "okay", "check", "and", "so"] + [f"w{i}" for i in range(40)]
    n = len(words)
    p_think = np.linspace(0.05, 0.001, n)
    p_solution = np.linspace(0.01, 0.0005, n)
    general = np.where(np.isin(words, ["the", "of", "and", "so"]), 0.02, 1e-4)
    table = pd.DataFrame({"word": pd.Series(words, dtype="string"), "count_think": (p_think * 1e4).astype("int64"),
                          "count_solution": (p_solution * 1e4).astype("int64"), "p_think": p_think,
                          "p_solution": p_solution, "diff": p_think - p_solution, "general_frequency": general,
                          "filtered": general > 1e-3, "rank": np.arange(1, n + 1), "kept": general <= 1e-3})
    path = stage(root, "vocab", {"vocab": {"general_frequency_threshold": 1e-3}}, {"pairs": 20})
    table.to_parquet(path / "frequencies.parquet", index=False)
    (path / "vocabulary.json").write_text(json.dumps(list(DEFAULT_VOCABULARY)))


PAPER_SAE = {"kind": "hub", "repo_id": "andreuka18/deepseek-r1-distill-llama-8b-lmsys-openthoughts",
             "subfolder": "blocks.19.hook_resid_post", "commit": "c0ffee" * 6 + "abcd"}


def score_stage(root: Path, model: str = "tiny-model", sae: dict | None = None) -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(0, 1e-4, D_SAE)
    scores[F_R] = np.linspace(3e-3, 1e-3, len(F_R))
    table = pd.DataFrame({"reason_score": scores, "share_pos": np.abs(scores), "entropy": 0.5},
                         index=pd.Index(range(D_SAE), name="feature"))
    table["rank"] = table["reason_score"].rank(ascending=False, method="first").astype("int64")
    config = {"model": {"name": model}, "data": {"sources": {"r": {"path": "demo:reasoning"}}}}
    path = stage(root, "score", config)
    table.to_parquet(path / "scores.parquet")
    write_json(path / "top_features.json", {"features": F_R, "q": 0.85, "top_k": None, "tau": 9e-4,
                                            "hook": "blocks.2.hook_resid_post", "vocabulary": list(DEFAULT_VOCABULARY),
                                            "sae": sae or {"kind": "train"}})
    write_json(path / "counts.json", {"tokens": 5000})


def interpret_stage(root: Path) -> None:
    records, contexts = {}, {}
    for i, f in enumerate(F_R):
        ctx = []
        for j in range(3):
            tokens = ["Okay", ",", " wait", " |", " let", " me", "\n", " check", "."]
            acts = [0.0, 0.0, 0.5, 0.1, 0.0, 2.0 - 0.1 * j + i, 0.0, 0.3, 0.0]
            ctx.append({"sequence": j, "position": 5, "activation": max(acts), "token": " me", "tokens": tokens,
                        "acts": acts, "center": 5, "max_index": 5})
        contexts[str(f)] = ctx
        records[str(f)] = {
            "feature": f, "f_max": ctx[0]["activation"], "fires": 40, "tokens": 5000, "density": 0.008,
            "histogram": {"edges": [0.01, 0.1, 1.0, 10.0], "counts": [3, 10, 27]},
            "logits": {"top": [{"id": k, "token": f" up{k}", "value": 3.0 - k} for k in range(3)],
                       "bottom": [{"id": k, "token": f" down{k}", "value": -3.0 + k} for k in range(3)]},
            "top_contexts": [{**{k: v for k, v in c.items() if k not in ("tokens", "acts")},
                              "text": "".join(c["tokens"])} for c in ctx],
            "quantiles": [], "score": {"reason_score": 0.002, "rank": i + 1}, "in_top_set": True}
    path = stage(root, "interpret")
    write_json(path / "features.json", records)
    (path / "contexts.json").write_text(json.dumps(contexts))
    write_json(path / "f_max.json", {k: r["f_max"] for k, r in records.items()})


def cell_record(cell: Cell, acc: float, think: float, maj: str = "maj@2") -> dict:
    return {"cell": cell._asdict(), "label": cell.label, "row": cell.row,
            "metrics": {cell.task: {maj: acc, "pass@1": acc / 2, "think_tokens": think,
                                    "reasoning_words_per_1k": 1.5, "n_docs": 2.0}}}


def write_cell(root: Path, record: dict, digest: str, answers: list[str]) -> None:
    task, label = record["cell"]["task"], record["label"]
    path = root / "evaluate-cells" / task / f"{label}-{digest}"
    (path / "lm_eval" / label).mkdir(parents=True)
    write_json(path / "metrics.json", record)
    samples = [{"doc_id": d, "doc": {"problem": f"What is {d} + {d}?", "answer": str(2 * d)}, "target": str(2 * d),
                "resps": [[f"Let me think. Wait, {d} + {d} = {answer}.\nSo the answer is \\boxed{{{answer}}}."] * 2],
                "maj@2": float(answer == str(2 * d)), "pass@1": float(answer == str(2 * d))}
               for d, answer in enumerate(answers)]
    (path / "lm_eval" / label / f"samples_{task}_2026-01-01.jsonl").write_text(
        "".join(json.dumps(s) + "\n" for s in samples))


def evaluate_stage(root: Path, tasks=("reasoning_demo",), rows: dict | None = None, maj: str = "maj@2") -> None:
    """Cells of a baseline, two features and the word ban per task; or `rows`: {feature or no_steering: (acc %,
    tokens K) per task}, steered at gamma 2."""
    records = []
    for t, task in enumerate(tasks):
        plan = [(Cell(task), 0.5, 100.0, ["0", "3"]), (Cell(task, (11,), 2.0), 1.0, 150.0, ["0", "2"]),
                (Cell(task, (3,), 2.0), 0.0, 90.0, ["1", "3"]), (Cell(task, ban="reason"), 0.0, 60.0, ["1", "1"]),
                (Cell(task, ban="random-0"), 0.5, 110.0, ["0", "1"]), (Cell(task, ban="random-1"), 1.0, 120.0,
                                                                        ["0", "2"])]
        if rows:
            plan = [(Cell(task, () if key == "no_steering" else (key,), None if key == "no_steering" else 2.0),
                     values[2 * t] / 100, values[2 * t + 1] * 1000, ["0", "2"]) for key, values in rows.items()]
        for cell, acc, think, answers in plan:
            record = cell_record(cell, acc, think, maj)
            records.append(record)
            write_cell(root, record, "a1b2c3d4e5f6", answers)
    stale = cell_record(Cell(tasks[0]), 0.9, 1.0)  # an old cell of another config: never used
    write_cell(root, stale, "000000000000", ["9", "9"])
    path = stage(root, "evaluate", {"benchmark": {"tasks": list(tasks), "limit": 2, "repeats": 2, "max_gen_toks": 64},
                                    "steering": {"gammas": [2.0], "mode": "add"}})
    results_frame(records).to_csv(path / "results.csv", index=False)


def optional_stages(root: Path) -> None:
    path = stage(root, "autointerp", summary={"explainer": "fake-llm"})
    write_json(path / "groups.json", [
        {"name": "Self-Correction", "features": [11, 3], "function": "checks steps", "effect_type": "Semantic",
         "strengthening": "more checks", "weakening": "fewer"},
        {"name": "Other Behavior", "features": [7], "function": "", "effect_type": "", "strengthening": "",
         "weakening": ""}])
    path = stage(root, "diff")
    pd.DataFrame([{"trajectory": t, "name": t.replace("->", ""), "model": "tiny", "source": s, "init_from": i,
                   "fr_present": p, "fr_total": 6, "fr_share": p / 6, "set_present": 1, "set_total": 10,
                   "set_share": 0.1, "fr_median_best_cosine": 0.5}
                  for t, s, i, p in (("S", "chat", None, 1), ("S->D", "reasoning", "S", 4))]
                 ).to_csv(path / "presence.csv", index=False)
    pd.DataFrame([{"layer_from": 2, "layer": layer, "set": name, "n": n, "same": same, "maybe": 1, "diff": n - 1 - same,
                   "share_same": same / n, "share_maybe": 1 / n, "share_diff": (n - 1 - same) / n,
                   "mean_matching_score": 0.6, "mean_decoder_cosine": 0.7}
                  for layer in (1, 3) for name, n, same in (("reasoning", 6, 3), ("random", 10, 2))]
                 ).to_csv(path / "crosslayer.csv", index=False)
    write_json(path / "summary.json", {"main": {"set": "random"}, "threshold": 0.7, "left_out": ["the M stages"]})


def make_artifacts(root: Path, optional: bool = True, l0: float = 12.5, model: str = "tiny-model",
                   sae: dict | None = None, **evaluate) -> Path:
    vocab_stage(root)
    score_stage(root, model, sae)
    interpret_stage(root)
    evaluate_stage(root, **evaluate)
    train = stage(root, "train")
    write_json(train / "metrics.json", {"metrics/l0": l0, "metrics/explained_variance": 0.685})
    if optional:
        optional_stages(root)
    seal(root)
    return root


def seal(root: Path) -> None:
    """The sha256 manifests the stages write (run_stage) into every fixture stage."""
    for path in root.iterdir():
        if (path / "meta.json").is_file():
            write_manifest(path)


@pytest.fixture
def run_figures(compose, tmp_path):
    def run(*overrides: str) -> Path:
        cfg = compose("figures", (f"paths.paper={tmp_path / 'paper'}", "figures.contexts=3", *overrides))
        return figures.run(cfg)

    return run


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
    assert "| No steering | 50.0 | 25.0 | 100.0 | 1.5 |" in table1 and "| #11 γ=2 | 100.0 | 50.0 | 150.0 |" in table1
    assert "90.0" not in table1.split("#3 γ=2")[0] and "| #3 γ=2 | 0.0 | 0.0 | 90.0 |" in table1
    table2 = (paper / "tables" / "table2.md").read_text()
    assert "| Reason (ban R) | 0.0 |" in table2 and "| Random (mean of 2) | 75.0 | 37.5 | 115.0 |" in table2
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
