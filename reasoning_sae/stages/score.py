"""The `score` stage: ReasonScore for every feature of the trained SAE over the scoring corpus, and F_R.

Writes `scores.parquet` (one row per feature: score, its parts, per-word means, rank), `top_features.json`
(F_R, best first, with the threshold used), `counts.json` (tokens in each set) and `diffmean.safetensors` (the
DiffMean steering vector from the same pass: score/diffmean.py)."""

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from reasoning_sae.artifacts import (DIFFMEAN, SCORES, TOP_FEATURES, activation_cache, has_artifact, output_dir,
                                     read_tokens, run_sae, run_stage, sae_inputs, upstream, upstream_inputs, write_json)
from reasoning_sae.errors import UserError
from reasoning_sae.models import load_lm, model_config
from reasoning_sae.sae import SparseAutoencoder
from reasoning_sae.score.diffmean import save_diffmean
from reasoning_sae.score.reasonscore import score_pass, top_features
from reasoning_sae.vocab.vocabulary import load_vocabulary

CONFIG_KEYS = ("score", "model")
UPSTREAM = {"corpus": "score", "vocab": "vocabulary.json"}


def inputs(cfg: DictConfig) -> dict[str, str]:
    return {**upstream_inputs(cfg, UPSTREAM), **sae_inputs(cfg)}


def build(cfg: DictConfig, out: Path) -> dict:
    sc = cfg.score
    if sc.q is not None and not 0 < sc.q < 1:
        raise UserError(f"score.q={sc.q} must lie strictly between 0 and 1 (the paper: 0.997)")
    mc = model_config(OmegaConf.to_container(cfg.model, resolve=True))
    fetched = run_sae(cfg)
    sae = SparseAutoencoder.load(fetched.path)
    if sc.fold_decoder_norm:  # here, so that a refusal (topk) comes before the model loads
        try:
            sae.fold_decoder_norm()
        except UserError as err:
            raise UserError(f"{err} (score.fold_decoder_norm=false)") from None
    vocabulary = load_vocabulary(upstream(cfg, "vocab", UPSTREAM["vocab"]))
    token_ids = read_tokens(cfg, UPSTREAM["corpus"], sc.sequences)
    lm = load_lm(mc)
    lm.activation_cache = activation_cache(cfg)  # score fills it, interpret reads it
    table, diffmean = score_pass(lm, sae, token_ids, vocabulary, window=tuple(sc.window), alpha=sc.alpha,
                                 ignore_token_ids=mc.ignore_token_ids if sc.ignore_special_tokens else (),
                                 batch_sequences=sc.batch_sequences,
                                 progress=True, sink_positions=mc.sink_positions)
    features = top_features(table, q=sc.q, top_k=sc.top_k)
    table.to_parquet(out / SCORES)
    threshold = float(table["reason_score"].quantile(sc.q)) if sc.q is not None else None
    write_json(out / TOP_FEATURES, {"features": features, "q": sc.q, "top_k": sc.top_k, "tau": threshold,
                                    "hook": sae.hook_name(), "vocabulary": list(vocabulary),
                                    "sae": {**fetched.provenance, "path": str(fetched.path),
                                            "fingerprint": fetched.fingerprint}})
    write_json(out / "counts.json", {"tokens": int(token_ids.size), **table.attrs})
    save_diffmean(diffmean, out / DIFFMEAN)
    best = table.loc[features[:5], "reason_score"]
    return {"features_scored": len(table), "top_features": len(features), "tau": threshold,
            "best": {int(k): float(v) for k, v in best.items()}, "tokens_pos": table.attrs["tokens_pos"],
            "diffmean_norm": float(diffmean.vector_D.norm())}


def run(cfg: DictConfig) -> Path:
    if has_artifact(output_dir(cfg, "score"), SCORES) and not (output_dir(cfg, "score") / DIFFMEAN).is_file():
        cfg = OmegaConf.merge(cfg, {"force": True})  # written before DiffMean existed: rebuilt, same scores
    return run_stage(cfg, "score", CONFIG_KEYS, inputs(cfg), lambda out: build(cfg, out))

