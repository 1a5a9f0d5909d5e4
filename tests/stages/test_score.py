import json
from pathlib import Path

import pandas as pd
import pytest

from reasoning_sae import UserError
from reasoning_sae.stages import corpus, score, train, vocab
from tests.helpers import tiny


def _pipeline(compose, model_dir, *extra):
    cfg = compose("score", (*tiny(model_dir), *extra))
    for stage in (corpus, train, vocab):
        stage.run(cfg)
    return cfg


def test_score_stage_ranks_every_feature_and_writes_f_r(compose, tiny_llama_dir):
    cfg = _pipeline(compose, tiny_llama_dir)
    out = score.run(cfg)
    table = pd.read_parquet(out / "scores.parquet")
    assert len(table) == 64 and sorted(table["rank"]) == list(range(1, 65))
    assert {"reason_score", "share_pos", "share_neg", "entropy", "mean_wait", "mean_let me"} <= set(table.columns)
    top = json.loads((out / "top_features.json").read_text())
    assert top["q"] == 0.997 and top["features"] == table.sort_values("reason_score", ascending=False).index[
        : len(top["features"])].tolist()
    assert all(table.loc[f, "reason_score"] > top["tau"] for f in top["features"])
    counts = json.loads((out / "counts.json").read_text())
    assert counts["tokens_pos"] > 0 and counts["tokens_per_word"]["wait"] > 0


def test_released_code_preset(compose, tiny_llama_dir):
    cfg = _pipeline(compose, tiny_llama_dir, "score=released_code", "score.top_k=5")
    out = score.run(cfg)
    top = json.loads((out / "top_features.json").read_text())
    assert len(top["features"]) == 5 and top["top_k"] == 5  # top_k wins over a quantile
    assert cfg.score.window == [1, 2] and cfg.score.fold_decoder_norm


@pytest.mark.parametrize(("override", "message"), [
    ("score.q=1.5", "strictly between 0 and 1"),
    ("model.name=smollm2-135m-instruct", "does not match the model width|trained on"),
])
def test_bad_input_writes_nothing(compose, tiny_llama_dir, override, message):
    cfg = _pipeline(compose, tiny_llama_dir)
    bad = compose("score", (*tiny(tiny_llama_dir), override))
    if override.startswith("model"):
        bad = compose("score", (*[a for a in tiny(tiny_llama_dir) if not a.startswith("model.")], override,
                                "model.layer=2"))
    with pytest.raises(UserError, match=message):
        score.run(bad)
    assert not (Path(cfg.paths.artifacts) / "demo" / "score").exists()


def test_vocabulary_absent_from_the_corpus(compose, tiny_llama_dir, tmp_path):
    words = tmp_path / "words.json"
    words.write_text(json.dumps(["Zyzzogeton"]))
    cfg = _pipeline(compose, tiny_llama_dir, f"vocab.file={words}")
    with pytest.raises(UserError, match="no occurrence of any vocabulary word"):
        score.run(cfg)
    assert not (Path(cfg.paths.artifacts) / "demo" / "score").exists()


def test_score_needs_its_inputs(compose, tiny_llama_dir):
    with pytest.raises(UserError, match="run the corpus stage first|run the train stage first"):
        score.run(compose("score", tiny(tiny_llama_dir)))


def test_the_stage_writes_diffmean_from_the_same_pass_and_the_same_scores(compose, tiny_llama_dir):
    """diffmean.safetensors equals a direct numpy mean difference over the same masks (ReasonScore's windows and
    kept tokens) on the tiny model; scores.parquet equals reason_scores' table, which computes no DiffMean."""
    import numpy as np
    import torch
    from omegaconf import OmegaConf

    from reasoning_sae import load_lm, reason_scores
    from reasoning_sae.artifacts import read_diffmean, read_tokens, sae_dir
    from reasoning_sae.models import model_config
    from reasoning_sae.models.positions import keep_mask
    from reasoning_sae.sae import SparseAutoencoder
    from reasoning_sae.score.reasonscore import set_masks, tokenize_vocabulary
    from reasoning_sae.vocab.vocabulary import load_vocabulary

    cfg = _pipeline(compose, tiny_llama_dir)
    out = score.run(cfg)
    path, vector, metadata = read_diffmean(cfg)
    assert path == out / "diffmean.safetensors" and vector.dtype == np.float32 and vector.shape == (32,)
    mc = model_config(OmegaConf.to_container(cfg.model, resolve=True))
    lm, sae = load_lm(mc), SparseAutoencoder.load(sae_dir(cfg))
    vocabulary = load_vocabulary(Path(cfg.paths.artifacts) / "demo" / "vocab" / "vocabulary.json")
    ids = torch.as_tensor(read_tokens(cfg, "score"))
    acts = lm.activations(ids, hook=sae.hook_name()).double().numpy()
    keep = keep_mask(ids, mc.ignore_token_ids, mc.sink_positions)
    masks = set_masks(ids, tokenize_vocabulary(vocabulary, lm.tokenizer), tuple(cfg.score.window), keep).numpy()
    inside, outside = masks[..., 0] > 0, masks[..., 1] > 0
    assert (metadata["hook"], int(metadata["tokens_pos"]), int(metadata["tokens_neg"])) == (
        "blocks.2.hook_resid_post", inside.sum(), outside.sum()) and inside.sum() and outside.sum()
    np.testing.assert_allclose(vector, acts[inside].mean(0) - acts[outside].mean(0), rtol=1e-5, atol=1e-6)
    table = reason_scores(lm, sae, read_tokens(cfg, "score"), vocabulary, window=tuple(cfg.score.window),
                          alpha=cfg.score.alpha, ignore_token_ids=mc.ignore_token_ids,
                          sink_positions=mc.sink_positions, batch_sequences=cfg.score.batch_sequences)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "scores.parquet"), table, check_exact=True)

    # an artifact written before DiffMean existed is rebuilt by the next run, with the same scores to the byte
    before = {name: (out / name).read_bytes() for name in ("scores.parquet", "counts.json", "diffmean.safetensors")}
    (out / "diffmean.safetensors").unlink()
    score.run(cfg)
    assert {name: (out / name).read_bytes() for name in before} == before
