import json
from pathlib import Path

import pandas as pd
import pytest

from reasoning_sae import UserError
from reasoning_sae.stages import corpus, evaluate, interpret, score, train, vocab
from tests.stages.test_train import tiny

SMALL = ("score.top_k=2",)  # tiny() already makes the benchmark small


@pytest.fixture
def pipeline(compose, tiny_llama_dir):
    """corpus -> interpret on the tiny model; returns a composer of evaluate configs with extra overrides."""
    base = (*tiny(tiny_llama_dir), *SMALL)
    for stage in (corpus, train, vocab, score, interpret):
        stage.run(compose("interpret", base))
    return lambda *extra: compose("evaluate", (*base, *extra))


def _cells(cfg) -> list[Path]:
    return sorted((Path(cfg.paths.artifacts) / "demo" / "evaluate-cells").glob("*/*/metrics.json"))


def test_evaluate_writes_lm_eval_results_tables_and_reuses_cells(pipeline):
    cfg = pipeline()
    out = evaluate.run(cfg)
    frame = pd.read_csv(out / "results.csv")
    top = json.loads((Path(cfg.paths.artifacts) / "demo" / "score" / "top_features.json").read_text())["features"][0]
    assert set(frame["label"]) == {"baseline", f"f{top}_g2", "ban-reason", "ban-random-0"}
    assert {"pass@1", "maj@1", "maj@2", "think_tokens", "reasoning_words_per_1k", "n_docs"} <= set(frame["metric"])
    assert (frame[frame["metric"] == "n_docs"]["value"] == 2).all()
    assert frame[frame["metric"] == "think_tokens"]["value"].between(1, 6).all()
    table = (out / "table.md").read_text()
    assert "| No steering |" in table and f"| #{top} γ=2 |" in table and "reasoning_demo pass@1" in table
    assert "| Reason (ban R) |" in (out / "wordban.md").read_text()
    cells = _cells(cfg)
    assert len(cells) == 4
    lm_eval_dir = cells[0].parent / "lm_eval"
    assert list(lm_eval_dir.glob("*/results_*.json")) and list(lm_eval_dir.glob("*/samples_reasoning_demo_*.jsonl"))
    samples = [json.loads(x) for x in next(lm_eval_dir.glob("*/samples_*.jsonl")).read_text().splitlines()]
    assert len(samples) == 2 and len(samples[0]["resps"][0]) == 2  # two repeats per problem

    stamp = (out / "meta.json").read_text()
    assert evaluate.run(cfg) == out and (out / "meta.json").read_text() == stamp  # unchanged: skipped
    before = {p: p.stat().st_mtime_ns for p in cells}
    wider = pipeline("steering.gammas=[2.0,-2.0]", "benchmark.word_ban.enabled=false")
    frame = pd.read_csv(evaluate.run(wider) / "results.csv")
    assert set(frame["label"]) == {"baseline", f"f{top}_g2", f"f{top}_g-2"}
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # old cells reused, one new cell computed
    assert len(_cells(cfg)) == 5


def test_a_multirun_job_writes_its_own_table_and_shares_cells(pipeline, tmp_path):
    cfg = pipeline("steering.baseline=false", "benchmark.word_ban.enabled=false", f"+job_dir={tmp_path / 'job0'}")
    out = evaluate.run(cfg)
    assert out == tmp_path / "job0" / "evaluate" and (out / "table.md").is_file()
    assert len(_cells(cfg)) == 1
    collect = pipeline("benchmark.word_ban.enabled=false")
    evaluate.run(collect)
    assert len(_cells(cfg)) == 2  # the collecting run computed only the baseline


BAD = [
    ("benchmark.tasks=[no_such_task]", "unknown benchmark task 'no_such_task'"),
    ("steering.features=[64]", r"feature index out of range: \[64\]"),
    ("steering.gammas=[inf]", "steering.gammas must be finite"),
    ("steering.gammas=[strong]", "steering.gammas must be finite"),
    ("benchmark.engine=tpu", "unknown benchmark.engine 'tpu'"),
    ("steering.features=wait", "give a list of feature ids or `top`"),
    ("steering.f_max=big", "steering.f_max='big': use interpret, sae or a number"),
]


def test_bad_input_writes_nothing(pipeline, tmp_path):
    (tmp_path / "math.jsonl").write_text(json.dumps({"problem": "1+1?"}) + "\n")
    missing_field = ("benchmark.tasks=[math500]", f"+benchmark.data_files.math500={tmp_path / 'math.jsonl'}")
    for overrides, message in [*(((o,), m) for o, m in BAD),
                               (missing_field, "lacks field 'answer' needed by math500")]:
        cfg = pipeline(*overrides)
        with pytest.raises(UserError, match=message):
            evaluate.run(cfg)
        assert not (Path(cfg.paths.artifacts) / "demo" / "evaluate").exists()
