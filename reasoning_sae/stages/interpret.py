"""The `interpret` stage: dashboards and f_max for the features of F_R (paper Sec. 4.2, Figs. 3, 8, 9).

One LM pass over the scoring corpus (the score stage's tokens). Writes `features.json` (one record per feature: f_max
and where, density, histogram, logit effects, ReasonScore parts, top and quantile contexts as text), `contexts.json`
(the top contexts token by token: strings and activations, for the figures), `f_max.json` ({feature id: f_max}, read
by steering), `index.html` and `features/<id>.html` (static, offline), and with `interpret.held_out` > 0
`held_out.json` (per feature, contexts no dashboard shows, token by token: activating ones across the quantile bands
and silent ones, for the autointerp stage's scoring)."""

import json
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from reasoning_sae.artifacts import (F_MAX, TOP_FEATURES, activation_cache, read_f_r, read_scores, read_tokens, run_sae,
                                     run_stage, sae_inputs, upstream_inputs, write_json)
from reasoning_sae.errors import UserError
from reasoning_sae.interpret.features import HELD_OUT, feature_records
from reasoning_sae.interpret.render import write_site
from reasoning_sae.models import load_lm, model_config
from reasoning_sae.sae import SparseAutoencoder
from reasoning_sae.sae.source import check_feature_ids

CONFIG_KEYS = ("interpret", "model", "seed")
UPSTREAM = {"corpus": "score", "score": TOP_FEATURES}
SCORE_PARTS = ("reason_score", "share_pos", "share_neg", "mean_pos", "mean_neg", "entropy")


def inputs(cfg: DictConfig) -> dict[str, str]:
    return {**upstream_inputs(cfg, UPSTREAM), **sae_inputs(cfg)}


def score_parts(table: pd.DataFrame, feature: int) -> dict:
    """A feature's row of scores.parquet: the score, its parts, its rank and the per-word means (`mean_<word>`)."""
    row = table.loc[feature]
    words = [c for c in table.columns if c.startswith("mean_") and c not in SCORE_PARTS]
    return {**{k: float(row[k]) for k in SCORE_PARTS}, "rank": int(row["rank"]),
            "words": {c.removeprefix("mean_"): float(row[c]) for c in words}}


def compact(record: dict) -> dict:
    """The record without the per-token arrays (those live in the HTML): contexts become their text."""
    def text(c: dict) -> dict:
        return {**{k: v for k, v in c.items() if k not in ("tokens", "acts")}, "text": "".join(c["tokens"])}

    return {**record, "top_contexts": [text(c) for c in record["top_contexts"]],
            "quantiles": [{**q, "examples": [text(c) for c in q["examples"]]} for q in record["quantiles"]]}


def build(cfg: DictConfig, out: Path) -> dict:
    ic = cfg.interpret
    mc = model_config(OmegaConf.to_container(cfg.model, resolve=True))
    table = read_scores(cfg)
    top_set = read_f_r(cfg)
    features = list(dict.fromkeys([*top_set, *(int(f) for f in ic.extra_features)]))
    if not features:
        raise UserError("F_R is empty and interpret.extra_features names no feature: nothing to interpret "
                        "(lower score.q or set score.top_k)")
    fetched = run_sae(cfg)
    sae = SparseAutoencoder.load(fetched.path)
    check_feature_ids(features, sae.d_sae, "interpret.extra_features")
    token_ids = read_tokens(cfg, UPSTREAM["corpus"], ic.sequences)
    lm = load_lm(mc)
    lm.activation_cache = activation_cache(cfg)  # score fills it, interpret reads it
    records = feature_records(
        lm, sae, token_ids, features, top_n=ic.top_n, window=tuple(ic.context), bands=ic.quantile_bands,
        per_band=ic.per_band, reservoir=ic.reservoir, logit_k=ic.logit_k, seed=cfg.seed,
        ignore_token_ids=mc.ignore_token_ids if ic.ignore_special_tokens else (),
        batch_sequences=ic.batch_sequences, progress=True, sink_positions=mc.sink_positions, held_out=ic.held_out)
    held_out = {str(f): r.pop("held_out") for f, r in records.items() if "held_out" in r}
    for feature, record in records.items():
        record["score"] = score_parts(table, feature) if feature in table.index else None
        record["in_top_set"] = feature in top_set
    write_json(out / "features.json", {str(f): compact(r) for f, r in records.items()})
    (out / "contexts.json").write_text(json.dumps({str(f): r["top_contexts"] for f, r in records.items()}))
    write_json(out / F_MAX, {str(f): r["f_max"] for f, r in records.items()})
    if held_out:
        (out / HELD_OUT).write_text(json.dumps(held_out))
    write_json(out / "sae.json", {**fetched.provenance, "fingerprint": fetched.fingerprint})
    meta = {"title": f"Reasoning features · {cfg.experiment_name}", "model": mc.name, "hook": sae.hook_name(),
            "experiment": cfg.experiment_name, "tokens": int(token_ids.size)}
    write_site(records, out, meta)
    never = [f for f, r in records.items() if r["fires"] == 0]
    return {"features": len(records), "tokens": int(token_ids.size), "never_fire": never,
            "f_max": {str(f): records[f]["f_max"] for f in features[:5]}}


def run(cfg: DictConfig) -> Path:
    return run_stage(cfg, "interpret", CONFIG_KEYS, inputs(cfg), lambda out: build(cfg, out))

