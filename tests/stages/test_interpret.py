import json
import re
from pathlib import Path

import pandas as pd
import pytest

from reasoning_sae import UserError
from reasoning_sae.stages import corpus, interpret, score, train, vocab
from tests.helpers import tiny


def _pipeline(compose, model_dir, *extra, stages=(corpus, train, vocab, score)):
    """corpus -> train -> vocab -> score on the tiny model; the interpret config composed with the same overrides."""
    overrides = (*tiny(model_dir), *extra)
    for stage in stages:
        stage.run(compose("score", overrides))
    return compose("interpret", overrides)


def test_interpret_stage_writes_dashboards_and_f_max(compose, tiny_llama_dir):
    cfg = _pipeline(compose, tiny_llama_dir, "score.top_k=3", "interpret.extra_features=[5]", "interpret.top_n=4")
    out = interpret.run(cfg)
    top = json.loads((Path(cfg.paths.artifacts) / "demo" / "score" / "top_features.json").read_text())["features"]
    f_max = json.loads((out / "f_max.json").read_text())
    assert set(top) <= {int(k) for k in f_max} and "5" in f_max
    features = json.loads((out / "features.json").read_text())
    table = pd.read_parquet(Path(cfg.paths.artifacts) / "demo" / "score" / "scores.parquet")
    best = features[str(top[0])]
    assert best["f_max"] == f_max[str(top[0])] and best["in_top_set"] and not features["5"]["in_top_set"]
    assert best["score"]["rank"] == 1 and best["score"]["reason_score"] == pytest.approx(table.loc[top[0], "reason_score"])
    assert {"wait", "let me"} <= set(best["score"]["words"]) and len(best["logits"]["top"]) == 10
    assert 0 < len(best["top_contexts"]) <= 4 and "text" in best["top_contexts"][0]
    assert "acts" not in best["top_contexts"][0]  # per-token arrays live in contexts.json and the HTML
    contexts = json.loads((out / "contexts.json").read_text())[str(top[0])]
    assert [c["activation"] for c in contexts] == [c["activation"] for c in best["top_contexts"]]
    first = contexts[0]
    assert "".join(first["tokens"]) == best["top_contexts"][0]["text"] and len(first["acts"]) == len(first["tokens"])
    assert max(first["acts"]) == pytest.approx(first["activation"], abs=1e-4)
    assert first["acts"][first["max_index"]] == max(first["acts"])
    if best["f_max"] > 0:
        assert best["top_contexts"][0]["activation"] == best["f_max"]
    index = (out / "index.html").read_text()
    links = re.findall(r'href="(features/\d+\.html)"', index)
    assert len(links) == len(f_max) and all((out / link).is_file() for link in links)
    assert f"Feature {top[0]}" in (out / "features" / f"{top[0]}.html").read_text()
    stamp = (out / "meta.json").read_text()
    assert interpret.run(cfg) == out and (out / "meta.json").read_text() == stamp  # unchanged: skipped


def test_interpret_needs_the_score_stage(compose, tiny_llama_dir):
    cfg = _pipeline(compose, tiny_llama_dir, stages=(corpus, train))
    with pytest.raises(UserError, match="run the score stage first"):
        interpret.run(cfg)
    assert not (Path(cfg.paths.artifacts) / "demo" / "interpret").exists()


def test_bad_extra_feature_writes_nothing(compose, tiny_llama_dir):
    cfg = _pipeline(compose, tiny_llama_dir, "interpret.extra_features=[64]")
    with pytest.raises(UserError, match=r"interpret.extra_features names features \[64\] but the SAE has 64 \(0..63\)"):
        interpret.run(cfg)
    assert not (Path(cfg.paths.artifacts) / "demo" / "interpret").exists()


def test_interpret_reads_the_score_stages_pass_and_writes_the_same_bytes(compose, tiny_llama_dir, monkeypatch):
    """score leaves its activations in activation-cache/; interpret reads them (no model pass) with the same result
    as its own pass (reuse_activations_gb=0)."""
    from reasoning_sae.models.lm import LanguageModel

    cfg = _pipeline(compose, tiny_llama_dir, "score.top_k=3")
    root = Path(cfg.paths.artifacts) / "demo"
    assert len(list((root / "activation-cache").glob("*.safetensors"))) == 1
    plain = interpret.run(compose("interpret", (*tiny(tiny_llama_dir), "score.top_k=3", "reuse_activations_gb=0")))
    expected = {name: (plain / name).read_bytes() for name in ("contexts.json", "f_max.json", "features.json")}
    monkeypatch.setattr(LanguageModel, "activations", lambda *a, **k: pytest.fail("interpret ran the model"))
    reused = interpret.run(compose("interpret", (*tiny(tiny_llama_dir), "score.top_k=3", "force=true")))
    assert {name: (reused / name).read_bytes() for name in expected} == expected
