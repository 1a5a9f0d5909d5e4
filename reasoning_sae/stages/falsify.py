"""The `falsify` stage (beyond the paper): do the features of F_R encode reasoning, or detect a few tokens? Token
injection and context ablation after Ma et al. 2026 (arXiv 2601.05679), on F_R and on random control features.

Reads the scoring corpus (reasoning text), the corpus stage's held-out chat split (non-reasoning text the SAE never
trained on), the vocabulary, F_R and the score table, and the interpret stage's top contexts (F_R's trigger tokens).
Writes `falsify.csv` (one row per feature: group, trigger tokens, reasoning / baseline / injected / context /
ablated mean activations, injected-to-reasoning ratio, Cohen's d, p, verdict) and `examples.json` (a few injected
and ablated texts); meta.json's summary holds the share of token detectors in F_R and among the random features."""

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from reasoning_sae.artifacts import (TOP_FEATURES, read_contexts, read_f_r, read_heldout, read_scores, read_tokens,
                                     run_sae, run_stage, sae_inputs, stage_dir, upstream, upstream_inputs)
from reasoning_sae.errors import UserError
from reasoning_sae.falsify import Settings, falsify, random_controls, summarize, to_frame
from reasoning_sae.falsify.texts import Texts, check_room
from reasoning_sae.falsify.triggers import from_contexts
from reasoning_sae.models import load_lm, model_config
from reasoning_sae.sae import SparseAutoencoder
from reasoning_sae.vocab.vocabulary import load_vocabulary

log = logging.getLogger(__name__)
CONFIG_KEYS = ("falsify", "score", "model", "seed")
UPSTREAM = {"corpus": "score", "vocab": "vocabulary.json", "score": TOP_FEATURES, "interpret": "contexts.json"}
RULE = ("token_detector: Cohen's d of injected vs un-injected chat >= {effect} at t-test p < {alpha} (Ma et al. "
        "2026, scripts/run_token_injection_experiment.py) and injected mean >= {share} x reasoning mean (ours)")
CANDIDATES = 3  # random features drawn per one kept: a control needs trigger tokens, so it must fire where read
EXAMPLES = 2  # injected and ablated texts kept, decoded, in examples.json


def inputs(cfg: DictConfig) -> dict[str, str]:
    return {**upstream_inputs(cfg, UPSTREAM), **sae_inputs(cfg)}


def settings(cfg: DictConfig) -> Settings:
    fc = cfg.falsify
    return Settings(triggers=fc.triggers, sites=fc.sites, injections=fc.injections, ablation=fc.ablation,
                    window=tuple(cfg.score.window), share=fc.share, effect=fc.effect, alpha=fc.alpha,
                    batch_sequences=fc.batch_sequences, seed=cfg.seed, controls=fc.random_features)


def examples(texts: Texts, kind: str, decode) -> list[dict]:
    """The first texts of one kind, decoded, with their sites (position and trigger)."""
    return [{"kind": kind, "text": decode(texts.ids_TS[t].tolist()),
             "sites": [{"position": int(p), "token": decode([int(k)])}
                       for p, k in zip(texts.pos_N[texts.text_N == t], texts.token_N[texts.text_N == t], strict=True)]}
            for t in range(min(EXAMPLES, len(texts.ids_TS)))]


def build(cfg: DictConfig, out: Path) -> dict:
    fc = cfg.falsify
    mc = model_config(OmegaConf.to_container(cfg.model, resolve=True))
    chat = read_heldout(cfg)
    if not len(chat):
        raise UserError("the corpus stage's held-out chat split is empty, so there is no non-reasoning text to inject "
                        "into: set data.heldout.sequences (e.g. 16) and rerun the corpus stage (python -m "
                        "reasoning_sae corpus)")
    f_r = read_f_r(cfg)
    if not f_r:
        raise UserError("F_R is empty: nothing to falsify (lower score.q or set score.top_k)")
    contexts = read_contexts(cfg)
    # A feature that never fired on the interpret stage's sequences has nothing to inject: it is left out (and
    # named in the summary). One that fired but has no contexts means contexts.json does not match: an error.
    records = stage_dir(cfg, "interpret") / "features.json"
    fires = {int(k): r.get("fires") for k, r in json.loads(records.read_text()).items()} if records.is_file() else {}
    never = [f for f in f_r if not contexts.get(f) and fires.get(f) == 0]
    f_r = [f for f in f_r if f not in never]
    if never and not f_r:
        raise UserError(f"no feature of F_R fires on the interpret stage's sequences ({never[:10]}...): nothing to "
                        f"falsify (train the SAE longer, or check sae_source)")
    silent = [f for f in f_r if not contexts.get(f)]
    if silent:
        raise UserError(f"features {silent[:10]} of F_R have no top contexts in the interpret stage's contexts.json, "
                        f"so they have no trigger tokens: rerun the interpret stage on all the scoring sequences "
                        f"(python -m reasoning_sae interpret interpret.sequences=null force=true)")
    scoring = read_tokens(cfg, UPSTREAM["corpus"])
    reasoning = scoring[: fc.sequences]
    check_room(reasoning.shape[1], fc.injections, fc.ablation, tuple(cfg.score.window), mc.sink_positions)
    triggers = {f: from_contexts(contexts[f], scoring, fc.triggers) for f in f_r}
    # candidates in a random order: the first random_features of them that fire in the reasoning sequences are kept
    controls = random_controls(read_scores(cfg), f_r, CANDIDATES * fc.random_features, cfg.seed)
    vocabulary = load_vocabulary(upstream(cfg, "vocab", UPSTREAM["vocab"]))
    sae = SparseAutoencoder.load(run_sae(cfg).path)
    lm = load_lm(mc)
    result = falsify(lm, sae, reasoning, chat, {**dict.fromkeys(f_r, "F_R"), **dict.fromkeys(controls, "random")},
                     triggers, vocabulary, settings(cfg),
                     ignore_token_ids=mc.ignore_token_ids if cfg.score.ignore_special_tokens else (),
                     sink_positions=mc.sink_positions, progress=True)
    decode = lm.tokenizer.decode
    to_frame(result.results, lambda t: decode([t])).to_csv(out / "falsify.csv", index=False)
    (out / "examples.json").write_text(json.dumps(
        examples(result.injected, "injected", decode) + examples(result.ablated, "ablated", decode), indent=1,
        ensure_ascii=False) + "\n")
    shares = summarize(result.results)
    if shares.get("random", {}).get("features", 0) < fc.random_features:
        log.warning("falsify: %d random features asked for, %d outside F_R fire in the reasoning sequences: taking "
                    "those", fc.random_features, shares.get("random", {}).get("features", 0))
    if never:
        log.warning("falsify: features %s of F_R never fire on the scoring sequences: left out", never)
    return {"groups": shares, "tokens": result.tokens, "hook": sae.hook_name(), "never_fire": never,
            "rule": RULE.format(effect=fc.effect, alpha=fc.alpha, share=fc.share),
            "injected_sites": len(result.injected.pos_N), "ablated_sites": len(result.ablated.pos_N)}


def run(cfg: DictConfig) -> Path:
    return run_stage(cfg, "falsify", CONFIG_KEYS, inputs(cfg), lambda out: build(cfg, out))
