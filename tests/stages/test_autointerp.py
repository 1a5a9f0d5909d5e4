"""The autointerp stage end to end on the tiny random Llama, with a local fake explainer server."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from reasoning_sae import UserError
from reasoning_sae.stages import autointerp, corpus, interpret, score, train, vocab
from tests.helpers import FakeExplainer, explainer_reply, tiny

FEATURES = 2
EXTRA = ("score.top_k=3", "interpret.top_n=2", "autointerp.n_prompts=3", "autointerp.max_new_tokens=4",
         f"autointerp.max_features={FEATURES}", "autointerp.gammas=[-4,4]", "autointerp.explainer.model=fake-judge",
         "autointerp.explainer.backoff=0", "interpret.held_out=6", "autointerp.scoring.examples=4",
         "autointerp.scoring.batch_size=3")
SCORING = FEATURES * 2 * 3  # features x methods x requests (4 activating + 4 silent contexts, 3 to a request)
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
        assert len(requests) == FEATURES + 1 + SCORING and all(r["body"]["model"] == "fake-judge" for r in requests)
        first = [r["text"] for r in rows if r["feature"] == features[0] and r["gamma"] == 4.0]
        assert all(text.strip() in requests[0]["body"]["messages"][1]["content"] for text in first)
        meta = json.loads((out / "meta.json").read_text())
        assert "sk-local" not in (out / "config.yaml").read_text() + json.dumps(meta)
        stamp = (out / "meta.json").read_text()
        scores = pd.read_csv(out / "scores.csv")
        assert scores["feature"].tolist() == features and (scores[["detection_n", "fuzzing_n"]] == 8).all().all()
        judged = pd.read_json(out / "judgements.jsonl", lines=True)
        assert len(judged) == FEATURES * 2 * 8 and set(judged["method"]) == {"detection", "fuzzing"}
        for (feature, method), part in judged.groupby(["feature", "method"]):  # the scores are the labels' scores
            tpr, tnr = part[part.truth].prediction.mean(), 1 - part[~part.truth].prediction.mean()
            assert scores.set_index("feature").loc[feature, f"{method}_balanced_accuracy"] == pytest.approx(
                (tpr + tnr) / 2)
            assert part.truth.sum() == 4 and set(part.band.dropna()) <= {0, 1, 2, 3}
        assert (scores["fuzzing_balanced_accuracy"] == 0.5).all()  # the fake labels every highlighted example 1
        fuzzed = judged[judged.method == "fuzzing"]
        assert fuzzed.text.str.contains("<<").all() and not judged[judged.method == "detection"].text.str.contains(
            "<<").any()
        by_group = pd.read_csv(out / "score_groups.csv")
        assert by_group["group"].tolist() == ["Self-Correction and Backtracking", "Other Behavior", "All features"]
        assert by_group["detection_balanced_accuracy"].iloc[-1] == pytest.approx(
            scores["detection_balanced_accuracy"].mean())
        assert "| Feature | Description | Detection bal. acc. % |" in (out / "scores.md").read_text()
        assert set(meta["summary"]["scores"]) == {"detection", "fuzzing"}
        assert autointerp.run(cfg) == out and (out / "meta.json").read_text() == stamp  # unchanged: skipped
        assert len(server.requests) == FEATURES + 2 + SCORING
    finally:
        server.close()
    # no endpoint now: the rebuild stops before the model runs and the previous artifact stays as it was
    with pytest.raises(UserError, match="no explainer endpoint"):
        autointerp.run(pipeline())
    assert (out / "meta.json").read_text() == stamp and not list(out.parent.glob(".autointerp.*"))


def test_a_rerun_after_the_explainer_stops_reuses_the_generations_and_sends_only_the_requests_not_answered(
        pipeline, monkeypatch):
    server = FakeExplainer()
    answered = []

    def fails_after_seven(body: dict) -> str:
        if body.get("max_tokens") != 1:  # not the probe
            answered.append(body)
            if len(answered) == 7:  # the two descriptions, the grouping and 4 scoring requests, then an outage
                server.script += [(503, json.dumps({"error": {"message": "down"}}))] * 50
        return explainer_reply(body)

    try:
        cfg = pipeline(f"autointerp.explainer.base_url={server.url}", "autointerp.explainer.retries=0")
        server.script = [(200, server.completion({"model": "m", "max_tokens": 1})),
                         (400, json.dumps({"error": {"message": "quota exceeded"}}))]  # the probe passes, then no more
        with pytest.raises(UserError, match="quota exceeded"):
            autointerp.run(cfg)
        cached = sorted((Path(cfg.paths.artifacts) / "demo" / "autointerp-cache").glob("*.jsonl"))
        assert len(cached) == FEATURES
        monkeypatch.setattr(autointerp, "load_lm", lambda *_: pytest.fail("generated again"))
        server.reply = fails_after_seven  # the explainer is back for 7 answers: the generations come from the cache
        with pytest.raises(UserError, match=r"HTTP 503 \(down\)"):
            autointerp.run(cfg)
        assert not (Path(cfg.paths.artifacts) / "demo" / "autointerp").exists()
        cache = Path(cfg.paths.artifacts) / "demo" / "autointerp-cache" / "explainer"
        assert len(list(cache.glob("*.json"))) == 7
        server.script.clear()
        server.requests.clear()
        out = autointerp.run(cfg)
        assert len((out / "generations.jsonl").read_text().splitlines()) == FEATURES * 3 * 3
        probe, *sent = server.requests
        assert probe["body"]["max_tokens"] == 1 and len(sent) == FEATURES + 1 + SCORING - 7  # only the rest
        assert all("Text examples:" in r["body"]["messages"][-1]["content"] for r in sent)  # scoring requests
        server.requests.clear()
        again = autointerp.run(pipeline(f"autointerp.explainer.base_url={server.url}", "autointerp.explainer.retries=0",
                                        "force=true"))
        assert [r["body"]["max_tokens"] for r in server.requests] == [1]  # everything else came from the cache
        assert (again / "scores.csv").read_text() == (out / "scores.csv").read_text()
    finally:
        server.close()


def test_an_unreachable_explainer_or_missing_held_out_contexts_stop_the_stage_before_the_model_loads(pipeline,
                                                                                                     monkeypatch):
    monkeypatch.setattr(autointerp, "load_lm", lambda *_: pytest.fail("the model loaded"))
    base = ("autointerp.explainer.base_url=http://127.0.0.1:9/v1", "autointerp.explainer.retries=0")
    cfg = pipeline(*base)
    with pytest.raises(UserError, match="cannot reach the explainer"):
        autointerp.run(cfg)
    held_out = Path(cfg.paths.artifacts) / "demo" / "interpret" / "held_out.json"
    kept = json.loads(held_out.read_text())
    outside = next(f for f in range(64) if str(f) not in kept)
    with pytest.raises(UserError, match=rf"^feature {outside} has no held-out contexts in .*held_out.json: add it to "
                                        r"interpret.extra_features and rerun the interpret stage"):
        autointerp.run(pipeline(*base, f"autointerp.features=[{outside}]"))
    with pytest.raises(UserError, match=r"autointerp.scoring.methods is empty"):
        autointerp.run(pipeline(*base, "autointerp.scoring.methods=[]"))
    held_out.unlink()
    with pytest.raises(UserError, match=r"^the interpret stage kept no held-out contexts \(.*held_out.json is "
                                        r"missing\): rerun it with interpret.held_out > 0"):
        autointerp.run(cfg)
    with pytest.raises(UserError, match="cannot reach the explainer"):  # scoring off: held_out.json is not needed
        autointerp.run(pipeline(*base, "autointerp.scoring.enabled=false"))


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
