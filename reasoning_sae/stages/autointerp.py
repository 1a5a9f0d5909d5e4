"""The optional `autointerp` stage: steering-based automatic interpretation (paper Sec. 4.2, Table 4, Fig. 3b).

It needs an OpenAI-compatible LLM endpoint (the paper used GPT-4o), so `reproduce` runs it only when one is given. For
each feature (the score stage's F_R, best first, or `autointerp.features`) the model answers problems from the scoring
source at every gamma of the grid; the explainer describes each feature, then groups them. Writes `generations.jsonl`
(feature, gamma, domain, prompt, text), `descriptions.json`, `groups.json` and `table.md` (Table 4's layout). With
`autointerp.scoring.enabled` it then scores each description as delphi does (detection, fuzzing) on the interpret
stage's held-out contexts: `scores.csv` (per feature), `score_groups.csv` (per group), `scores.md`, `judgements.jsonl`.
Every explainer answer is cached in `autointerp-cache/explainer/`, so a rerun after a failure sends only the rest."""

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from reasoning_sae.artifacts import (F_MAX, TOP_FEATURES, read_f_max, read_f_r, run_sae, run_stage, sae_inputs,
                                     stage_dir, upstream, upstream_inputs, write_json)
from reasoning_sae.data.sources import load_source, source_configs
from reasoning_sae.errors import UserError
from reasoning_sae.interpret.autointerp import (Generation, Prompt, describe_feature, generate, group_features,
                                                markdown_table, sample_prompts, steered_generations)
from reasoning_sae.interpret.explainer import Explainer, endpoint
from reasoning_sae.interpret.features import HELD_OUT
from reasoning_sae.interpret.scoring import (Context, group_frame, held_out_contexts, score_feature, scores_frame,
                                             scores_markdown)
from reasoning_sae.models import load_lm, model_config
from reasoning_sae.sae import SparseAutoencoder

log = logging.getLogger(__name__)
CONFIG_KEYS = ("autointerp", "model", "seed")
UPSTREAM = {"corpus": "score", "score": TOP_FEATURES, "interpret": F_MAX}


def inputs(cfg: DictConfig) -> dict[str, str]:
    """Upstream fingerprints plus the explainer actually used (it may come from the environment; never the key)."""
    base_url, model = endpoint(cfg.autointerp.explainer)
    return {**upstream_inputs(cfg, UPSTREAM), **sae_inputs(cfg), "explainer": f"{model} at {base_url}"}


def select_features(cfg: DictConfig, d_sae: int) -> list[int]:
    """`autointerp.features`, or F_R best first; at most `max_features`, each checked against the SAE."""
    ac = cfg.autointerp
    if ac.features is not None:
        chosen = [int(f) for f in ac.features]
    else:
        chosen = read_f_r(cfg)
    chosen = list(dict.fromkeys(chosen))[: ac.max_features or None]
    if not chosen:
        raise UserError("no features to interpret: F_R is empty and autointerp.features is unset "
                        "(lower score.q, or set autointerp.features=[...])")
    outside = [f for f in chosen if not 0 <= f < d_sae]
    if outside:
        raise UserError(f"autointerp.features {outside} are outside the SAE's 0..{d_sae - 1}: fix autointerp.features")
    return chosen


def check_config(ac: DictConfig) -> None:
    if not ac.gammas or not all(math.isfinite(float(g)) for g in ac.gammas):
        raise UserError(f"autointerp.gammas={list(ac.gammas or [])} must be a non-empty list of finite numbers")
    if int(ac.n_prompts) < 1 or int(ac.max_new_tokens) < 1:
        raise UserError("autointerp.n_prompts and autointerp.max_new_tokens must be at least 1")
    if ac.scoring.enabled and not ac.scoring.methods:
        raise UserError("autointerp.scoring.methods is empty: name detection and/or fuzzing, or set "
                        "autointerp.scoring.enabled=false")


def scoring_contexts(cfg: DictConfig, features: list[int]) -> dict[int, list[Context]]:
    """The held-out contexts each feature's description is scored on (interpret's held_out.json), checked before
    the model loads."""
    path = upstream(cfg, "interpret") / HELD_OUT
    if not path.is_file():
        raise UserError(f"the interpret stage kept no held-out contexts ({path} is missing): rerun it with "
                        "interpret.held_out > 0 (python -m reasoning_sae interpret), or set "
                        "autointerp.scoring.enabled=false")
    try:
        held_out = json.loads(path.read_text())
    except ValueError as err:
        raise UserError(f"{path} is corrupt ({err}): rerun the interpret stage (python -m reasoning_sae interpret "
                        "force=true)") from None
    return held_out_contexts(held_out, features, int(cfg.autointerp.scoring.examples), str(path))


def score_descriptions(cfg: DictConfig, explainer: Explainer, descriptions: list, groups: list,
                       contexts: dict[int, list[Context]], out: Path) -> dict:
    """Detection and fuzzing scores of every description: scores.csv, score_groups.csv, scores.md, judgements.jsonl;
    returns each method's mean balanced accuracy."""
    sc = cfg.autointerp.scoring
    scores, judgements = [], []
    for d in descriptions:
        for method in sc.methods:
            log.info("autointerp: scoring feature %d by %s", d.feature, method)
            score, labels = score_feature(explainer, d.feature, d.description, contexts[d.feature], method,
                                          int(sc.batch_size), int(sc.seed))
            scores.append(score)
            judgements += labels
    frame = scores_frame(scores, [d.feature for d in descriptions], list(sc.methods))
    by_group = group_frame(frame, groups)
    frame.to_csv(out / "scores.csv", index=False)
    by_group.to_csv(out / "score_groups.csv", index=False)
    with (out / "judgements.jsonl").open("w") as f:
        f.writelines(json.dumps(j._asdict()) + "\n" for j in judgements)
    (out / "scores.md").write_text(
        f"# Scored explanations · {cfg.experiment_name}\n\nEach description scored by {explainer.model} as delphi "
        f"does ({', '.join(sc.methods)}) on up to {sc.examples} activating and {sc.examples} silent held-out contexts "
        f"per feature, {sc.batch_size} to a request; balanced accuracy 50% is chance.\n\n"
        + scores_markdown(frame, by_group, {d.feature: d.description for d in descriptions}, list(sc.methods)))
    return {m: float(frame[f"{m}_balanced_accuracy"].mean()) for m in sc.methods}


def problems(cfg: DictConfig) -> list[Prompt]:
    """n_prompts problems of the scoring source (the rows of the ReasonScore corpus), stratified by domain."""
    rows = load_source(source_configs(cfg.data)[cfg.data.scoring.source])
    return sample_prompts(rows, int(cfg.autointerp.n_prompts), int(cfg.seed))


def header(cfg: DictConfig, explainer: Explainer, features: list[int], prompts: list[Prompt]) -> str:
    ac = cfg.autointerp
    domains = ", ".join(sorted({p.domain for p in prompts}))
    return (f"# Automatic interpretation · {cfg.experiment_name}\n\n"
            f"{len(features)} features steered (mode {ac.mode}, gamma {', '.join(f'{g:g}' for g in ac.gammas)}) on "
            f"{len(prompts)} problems ({domains}); described and grouped by {explainer.model}. "
            "Layout of the paper's Table 4.\n\n")


class GenerationCache:
    """Each feature's steered generations, kept outside the stage's atomic folder (`autointerp-cache/`), so a run the
    explainer stops (an outage, a quota) continues from them instead of generating again."""

    def __init__(self, cfg: DictConfig, sae_fingerprint: str, prompts: list[Prompt], settings: dict):
        ac = cfg.autointerp
        self.folder = stage_dir(cfg, "autointerp-cache")
        self.base = {"sae": sae_fingerprint, "model": OmegaConf.to_container(cfg.model, resolve=True),
                     "prompts": [tuple(p) for p in prompts], "settings": settings,
                     "steering": {"gammas": list(ac.gammas), "mode": ac.mode, "positions": ac.positions}}

    def _path(self, feature: int, f_max: float | None) -> Path:
        key = json.dumps({**self.base, "feature": feature, "f_max": f_max}, sort_keys=True, default=str)
        return self.folder / f"{feature}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.jsonl"

    def get(self, feature: int, f_max: float | None) -> list[Generation] | None:
        path = self._path(feature, f_max)
        if not path.is_file():
            return None
        return [Generation(**json.loads(line)) for line in path.read_text().splitlines() if line]

    def put(self, feature: int, f_max: float | None, rows: list[Generation]) -> None:
        path = self._path(feature, f_max)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text("".join(json.dumps(g._asdict()) + "\n" for g in rows))
        tmp.replace(path)


def build(cfg: DictConfig, out: Path) -> dict:
    ac = cfg.autointerp
    explainer = Explainer.from_config(OmegaConf.to_container(ac.explainer, resolve=True))
    explainer = explainer.with_cache(stage_dir(cfg, "autointerp-cache") / "explainer")
    check_config(ac)
    fetched = run_sae(cfg)
    sae = SparseAutoencoder.load(fetched.path)
    features = select_features(cfg, sae.d_sae)
    f_max = read_f_max(cfg, fetched.fingerprint)
    contexts = scoring_contexts(cfg, features) if ac.scoring.enabled else {}
    prompts = problems(cfg)
    explainer.probe()  # the endpoint answers before the model loads and generates
    settings = {"max_new_tokens": int(ac.max_new_tokens), "batch_size": ac.batch_size,
                "temperature": float(ac.temperature), "seed": int(cfg.seed)}
    cache = GenerationCache(cfg, fetched.fingerprint, prompts, settings)
    lm, reference, generations = None, None, {}
    for i, feature in enumerate(features, 1):
        generations[feature] = cache.get(feature, f_max.get(feature))
        if generations[feature] is not None:
            continue
        if lm is None:
            lm = load_lm(model_config(OmegaConf.to_container(cfg.model, resolve=True)))
            reference = generate(lm, prompts, **settings)
        log.info("autointerp: steering feature %d (%d/%d)", feature, i, len(features))
        generations[feature] = steered_generations(
            lm, sae, feature, list(ac.gammas), prompts, f_max.get(feature), mode=ac.mode, positions=ac.positions,
            reference=reference, **settings)
        cache.put(feature, f_max.get(feature), generations[feature])
    with (out / "generations.jsonl").open("w") as f:
        f.writelines(json.dumps(g._asdict()) + "\n" for rows in generations.values() for g in rows)
    descriptions = [describe_feature(explainer, f, generations[f], ac.mode, ac.max_chars) for f in features]
    write_json(out / "descriptions.json", [asdict(d) for d in descriptions])
    groups = group_features(explainer, descriptions)
    write_json(out / "groups.json", [asdict(g) for g in groups])
    (out / "table.md").write_text(header(cfg, explainer, features, prompts) + markdown_table(groups, descriptions))
    summary = {"features": features, "prompts": len(prompts), "generations": sum(map(len, generations.values())),
               "groups": {g.name: list(g.features) for g in groups}, "explainer": explainer.model}
    if ac.scoring.enabled:
        summary["scores"] = score_descriptions(cfg, explainer, descriptions, groups, contexts, out)
    return summary


def run(cfg: DictConfig) -> Path:
    return run_stage(cfg, "autointerp", CONFIG_KEYS, inputs(cfg), lambda out: build(cfg, out))
