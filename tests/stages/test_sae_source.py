"""One SAE per run: score, interpret and evaluate read sae_source, and f_max only steers the SAE it was measured on."""

import json
from pathlib import Path

import pandas as pd
import pytest
from huggingface_hub import constants

from reasoning_sae import UserError
from reasoning_sae.stages import corpus, evaluate, interpret, score, train, vocab
from tests.hub import put_in_hf_cache
from tests.helpers import random_sae, tiny

HUB = ("sae_source=hub", "sae_source.repo_id=org/tiny-saes", "sae_source.subfolder=blocks.2.hook_resid_post")


def test_every_stage_reads_the_run_sae_and_f_max_belongs_to_it(compose, tiny_llama_dir, tmp_path, monkeypatch):
    hub = tmp_path / "hf" / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    other = random_sae(d_in=32, d_sae=24, seed=3)
    other.cfg.metadata.update(hook_name="blocks.2.hook_resid_post", model_name=str(tiny_llama_dir))
    other.save(tmp_path / "other")
    commit = put_in_hf_cache(hub, "org/tiny-saes", tmp_path / "other", "blocks.2.hook_resid_post")

    base = (*tiny(tiny_llama_dir), "score.top_k=3", "steering.features=[5]", "interpret.extra_features=[5]")
    for stage in (corpus, train, vocab, score, interpret):
        stage.run(compose("interpret", base))
    root = Path(compose("score", base).paths.artifacts) / "demo"
    assert json.loads((root / "interpret" / "sae.json").read_text())["kind"] == "train"

    on_hub = compose("evaluate", (*base, *HUB))
    with pytest.raises(UserError, match=r"f_max .* was measured on another SAE than this run's sae_source: rerun it"):
        evaluate.run(on_hub)
    assert not (root / "evaluate").exists()

    for stage in (score, interpret):
        stage.run(compose("interpret", (*base, *HUB)))
    top = json.loads((root / "score" / "top_features.json").read_text())
    assert top["sae"]["kind"] == "hub" and top["sae"]["commit"] == commit
    assert len(pd.read_parquet(root / "score" / "scores.parquet")) == 24  # the hub SAE's 24 latents
    made_on = json.loads((root / "interpret" / "sae.json").read_text())
    assert made_on["fingerprint"] == f"hub:org/tiny-saes@{commit}/blocks.2.hook_resid_post"
    assert set(evaluate.f_max_for(on_hub, (5,))) and evaluate.sae_path(on_hub).is_relative_to(hub)


def test_paper_feature_ids_on_a_small_sae_fail_before_the_model_loads(compose, tiny_llama_dir):
    base = tiny(tiny_llama_dir)
    for stage in (corpus, train, vocab):
        stage.run(compose("evaluate", base))
    cfg = compose("evaluate", (*base, "steering.features=[3942,4395]", "steering.f_max=1.0"))
    with pytest.raises(UserError, match=r"steering.features names features \[3942, 4395\] but the SAE has 64 "
                                        r"\(0..63\).*sae_source=paper_release"):
        evaluate.run(cfg)


def test_paper_released_steering_its_top_features_needs_their_scores(compose):
    cfg = compose("evaluate", ("experiment=paper_released", "steering.features=top"))
    with pytest.raises(UserError, match=r"no score artifact at .*paper_released/score/top_features.json: run the "
                                        r"score stage first"):
        evaluate.run(cfg)
    assert not (Path(cfg.paths.artifacts) / "paper_released").exists()
