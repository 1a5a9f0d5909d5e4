"""The autointerp stage end to end on the tiny random Llama, with a local fake explainer server."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reasoning_sae import UserError
from reasoning_sae.stages import autointerp, corpus, interpret, score, train, vocab
from tests.helpers import FakeExplainer, tiny

FEATURES = 2
EXTRA = ("score.top_k=3", "interpret.top_n=2", "autointerp.n_prompts=3", "autointerp.max_new_tokens=4",
         f"autointerp.max_features={FEATURES}", "autointerp.gammas=[-4,4]", "autointerp.explainer.model=fake-judge",
         "autointerp.explainer.backoff=0")
ENV = ("OPENAI_BASE_URL", "OPENAI_API_KEY", "REASONING_SAE_EXPLAINER_MODEL")


@pytest.fixture
def pipeline(compose, tiny_llama_dir, monkeypatch):
    """corpus -> ... -> interpret on the tiny model; returns a composer of the autointerp config (extra overrides)."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    overrides = (*tiny(tiny_llama_dir), *EXTRA)
    for stage in (corpus, train, vocab, score, interpret):
        stage.run(compose("interpret", overrides))
    return lambda *more: compose("autointerp", (*overrides, *more))


def test_autointerp_writes_generations_descriptions_groups_and_table(pipeline, monkeypatch):
    server = FakeExplainer()
    try:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
        cfg = pipeline(f"autointerp.explainer.base_url={server.url}")
        out = autointerp.run(cfg)
        top = json.loads((Path(cfg.paths.artifacts) / "demo" / "score" / "top_features.json").read_text())["features"]
        features = top[:FEATURES]
        rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
        assert len(rows) == FEATURES * 3 * 3  # features x gammas (with 0) x prompts
        assert {(r["feature"], r["gamma"]) for r in rows} == {(f, g) for f in features for g in (-4.0, 0.0, 4.0)}
        assert set(rows[0]) == {"feature", "gamma", "domain", "prompt", "text"}
        assert len({r["domain"] for r in rows}) == 3  # three prompts from three domains
        descriptions = json.loads((out / "descriptions.json").read_text())
        assert [d["feature"] for d in descriptions] == features and descriptions[0]["function"] == "verification"
        groups = json.loads((out / "groups.json").read_text())
        assert [g["features"] for g in groups] == [features[:1], features[1:]]
        table = (out / "table.md").read_text()
        assert "| Group | Features | Possible function | Effect type | Observed behavior |" in table
        assert (f"| Self-Correction and Backtracking | {features[0]} | error checking | Semantic & Logical Consistency "
                "| Strengthening: re-checks steps. Weakening: commits to the first answer. |") in table
        assert "described and grouped by fake-judge" in table
        probe, *requests = server.requests  # a one-token probe before the model loads, then the real requests
        assert probe["body"]["max_tokens"] == 1 and probe["headers"]["Authorization"] == "Bearer sk-local"
        assert len(requests) == FEATURES + 1 and all(r["body"]["model"] == "fake-judge" for r in requests)
        first = [r["text"] for r in rows if r["feature"] == features[0] and r["gamma"] == 4.0]
        assert all(text.strip() in requests[0]["body"]["messages"][1]["content"] for text in first)
        meta = json.loads((out / "meta.json").read_text())
        assert "sk-local" not in (out / "config.yaml").read_text() + json.dumps(meta)
        stamp = (out / "meta.json").read_text()
        assert autointerp.run(cfg) == out and (out / "meta.json").read_text() == stamp  # unchanged: skipped
        assert len(server.requests) == FEATURES + 2
    finally:
        server.close()
    # no endpoint now: the rebuild stops before the model runs and the previous artifact stays as it was
    with pytest.raises(UserError, match="no explainer endpoint"):
        autointerp.run(pipeline())
    assert (out / "meta.json").read_text() == stamp and not list(out.parent.glob(".autointerp.*"))


def test_a_run_the_explainer_stops_keeps_its_generations_for_the_rerun(pipeline, monkeypatch):
    server = FakeExplainer()
    try:
        cfg = pipeline(f"autointerp.explainer.base_url={server.url}", "autointerp.explainer.retries=0")
        server.script = [(200, server.completion({"model": "m", "max_tokens": 1})),
                         (400, json.dumps({"error": {"message": "quota exceeded"}}))]  # the probe passes, then no more
        with pytest.raises(UserError, match="quota exceeded"):
            autointerp.run(cfg)
        cached = sorted((Path(cfg.paths.artifacts) / "demo" / "autointerp-cache").glob("*.jsonl"))
        assert len(cached) == FEATURES
        monkeypatch.setattr(autointerp, "load_lm", lambda *_: pytest.fail("generated again"))
        out = autointerp.run(cfg)  # the explainer is back: the generations come from the cache
        assert len((out / "generations.jsonl").read_text().splitlines()) == FEATURES * 3 * 3
    finally:
        server.close()


def test_an_unreachable_explainer_stops_the_stage_before_the_model_loads(pipeline, monkeypatch):
    monkeypatch.setattr(autointerp, "load_lm", lambda *_: pytest.fail("the model loaded"))
    cfg = pipeline("autointerp.explainer.base_url=http://127.0.0.1:9/v1", "autointerp.explainer.retries=0")
    with pytest.raises(UserError, match="cannot reach the explainer"):
        autointerp.run(cfg)


def test_cli_without_an_endpoint_exits_2_and_writes_nothing(pipeline, tiny_llama_dir, tmp_path):
    cfg = pipeline()
    env = {"REASONING_SAE_ARTIFACTS": cfg.paths.artifacts, "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "HOME": str(tmp_path), "WANDB_MODE": "offline"}
    result = subprocess.run([sys.executable, "-m", "reasoning_sae", "autointerp", *tiny(tiny_llama_dir), *EXTRA],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("error: no explainer endpoint: set autointerp.explainer.base_url")
    demo = Path(cfg.paths.artifacts) / "demo"
    assert not (demo / "autointerp").exists() and not list(demo.glob(".autointerp*"))
    assert not (demo / "logs" / "autointerp").exists()
