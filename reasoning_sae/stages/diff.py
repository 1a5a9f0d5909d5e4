"""The `diff` stage: stage-wise model diffing (paper Sec. 4.4, Fig. 4) and cross-layer matching (App. D.1, Table 3).

Stage-wise: one SAE per trajectory (`S` from scratch, `SD` = S's SAE fine-tuned on stage D's model and data for
30% of the tokens, ...); a feature of the main SAE (the run's sae_source) is present in a trajectory's SAE when its
decoder row has cosine >= diff.threshold with some decoder row there; reported for F_R and a chosen set.
Cross-layer: the main SAE's F_R and random features are matched to the SAE of each other layer (Hungarian method on
decoder dot products as in Eq. 8, or on cosines: diff.crosslayer.similarity), then scored by the cosine of the pair's
activations over the scoring corpus (Eq. 9) and classed same / maybe / diff. Method choices the paper leaves open:
reasoning_sae/diff/matching.py.

SAEs named in diff.stagewise.saes / diff.crosslayer.saes are read from disk (the paper's are made by the train stage,
see the diff block of conf/experiment/paper.yaml); the rest are trained here, small, on activations cached from one
LM pass over diff.train.sequences training sequences (diff.train.enabled=false: a missing SAE is an error). They
use the experiment's sae settings with diff.train.sae on top (the demo: another seed than the main SAE, whose
initialisation short runs would otherwise share); fine-tunes rerun the whole schedule (lambda warm-up, LR decay) over
their 30% of the tokens, one reading of "setup as in Sec. 4.1" (the paper leaves it open, DIGEST 9.4).

Writes presence.csv and presence.md (Fig. 4), crosslayer.csv and crosslayer.md (Table 3), matches.csv (one row per
matched feature), summary.json (with what this experiment leaves out of the paper's setup) and, with
diff.save_saes, the SAEs trained here under saes/<name>/."""

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from reasoning_sae.artifacts import (TOP_FEATURES, corpus_tokens, path_fingerprint, read_corpus, read_f_r, read_tokens,
                                     run_sae, run_stage, sae_inputs, upstream_inputs, write_json)
from reasoning_sae.diff import matching
from reasoning_sae.diff.activations import collect, pair_sums
from reasoning_sae.diff.training import quality, train_sae
from reasoning_sae.errors import UserError
from reasoning_sae.models import load_lm, model_config, resid_post
from reasoning_sae.models.hooks import parse_hook
from reasoning_sae.sae import SparseAutoencoder
from reasoning_sae.sae.io import CFG
from reasoning_sae.train.config import TrainConfig

log = logging.getLogger(__name__)
CONFIG_KEYS = ("diff", "model", "sae", "trainer", "seed")
UPSTREAM = {"corpus": "", "score": TOP_FEATURES}
PAPER_TRAJECTORIES = ("S", "SD", "SM", "SDF", "SMF")
MATCH_COLUMNS = ["layer", "set", "feature", "partner", "decoder_cosine", "matching_score", "class"]
PRESENCE_COLUMNS = ["trajectory", "name", "model", "source", "init_from", "fr_present", "fr_total", "fr_share",
                    "set_present", "set_total", "set_share", "fr_median_best_cosine"]
COUNT_COLUMNS = ["layer_from", "layer", "set", "n", "same", "maybe", "diff", "share_same", "share_maybe", "share_diff",
                 "mean_matching_score", "mean_decoder_cosine"]
MAX_LAYERS = 10**6  # layer range unknown until the model loads


def label(trajectory: str) -> str:
    """`SDF` -> `S->D->F` (the paper's Fig. 4 labels)."""
    return "->".join(trajectory)


def given_saes(cfg: DictConfig) -> dict[str, str]:
    """SAE directories named in the config for the trajectories and layers this run uses: name or `L<layer>` -> path
    (a config may name SAEs for more layers than diff.crosslayer.layers picks)."""
    dc = cfg.diff
    trajectories = {str(t) for t in dc.stagewise.trajectories or []}
    layers = None if dc.crosslayer.layers is None else {int(layer) for layer in dc.crosslayer.layers}
    return {**{str(t): str(p) for t, p in dc.stagewise.saes.items() if str(t) in trajectories},
            **{f"L{int(layer)}": str(p) for layer, p in dc.crosslayer.saes.items()
               if layers is None or int(layer) in layers}}


def config_key(name: str) -> str:
    """Where the SAE of a trajectory or `L<layer>` is named in the config."""
    return f"diff.crosslayer.saes.{name[1:]}" if name[1:].isdigit() else f"diff.stagewise.saes.{name}"


def inputs(cfg: DictConfig) -> dict[str, str]:
    ins = {**upstream_inputs(cfg, UPSTREAM), **sae_inputs(cfg)}
    for name, path in given_saes(cfg).items():
        if not (Path(path) / CFG).is_file():
            raise UserError(f"{config_key(name)}={path} is not an SAE directory (no cfg.json): train it first "
                            f"(python -m reasoning_sae.diff.saes with this run's overrides) or fix the path")
        ins[f"sae:{name}"] = path_fingerprint(path)
    return ins


def check(cfg: DictConfig, main_layer: int) -> None:
    """Everything about the config that can be wrong, before any model is loaded."""
    dc = cfg.diff
    matching.check_threshold(dc.threshold)
    matching.check_classes(dc.crosslayer.same, dc.crosslayer.maybe)
    if dc.crosslayer.assignment not in ("features", "full"):
        raise UserError(f"unknown diff.crosslayer.assignment {dc.crosslayer.assignment!r}: use features or full")
    matching.check_similarity(dc.crosslayer.similarity)
    matching.check_chunk(dc.chunk)
    if not 0 < dc.train.finetune_fraction <= 1:
        raise UserError(f"diff.train.finetune_fraction={dc.train.finetune_fraction} must lie in (0, 1] "
                        f"(the paper: 0.3)")
    n_layers = cfg.model.get("n_layers") or MAX_LAYERS
    for layer in dc.crosslayer.layers or ():
        if not 0 <= int(layer) < n_layers:
            raise UserError(f"diff.crosslayer.layers: layer {layer} is out of range: the model has {n_layers} "
                            f"layers (0-{n_layers - 1})")
        if int(layer) == main_layer:
            raise UserError(f"diff.crosslayer.layers lists {layer}, the main SAE's own layer: list other layers")
    for letter in dc.stagewise.stages:
        if not (len(str(letter)) == 1 and str(letter).isalpha()):
            raise UserError(f"diff.stagewise.stages key {letter!r} must be one letter (S, D, M, F in the paper)")
    trajectories = [str(t) for t in dc.stagewise.trajectories]
    for t in trajectories:
        unknown = sorted(set(t) - set(dc.stagewise.stages))
        if not t or unknown:
            raise UserError(f"trajectory {t!r} uses stage(s) {unknown} not in diff.stagewise.stages "
                            f"({sorted(dc.stagewise.stages)}): define them or fix diff.stagewise.trajectories")
        if len(t) > 1 and t[:-1] not in trajectories:
            raise UserError(f"trajectory {t} is fine-tuned from {t[:-1]}, which is not in "
                            f"diff.stagewise.trajectories: add {t[:-1]}")


def crosslayer_layers(cfg: DictConfig, main_layer: int, n_layers: int | None) -> list[int]:
    """diff.crosslayer.layers, or else the main layer plus each of diff.crosslayer.offsets inside the model."""
    cl = cfg.diff.crosslayer
    if cl.layers is not None:
        return [int(x) for x in cl.layers]
    inside = range(n_layers or MAX_LAYERS)
    return [main_layer + int(o) for o in cl.offsets if int(o) != 0 and main_layer + int(o) in inside]


def load_model(cfg: DictConfig):
    return load_lm(model_config(OmegaConf.to_container(cfg.model, resolve=True)))


def stage_model(cfg: DictConfig, letter: str) -> str:
    """The resolved model name of a stage letter (null: the experiment's model)."""
    model = cfg.diff.stagewise.stages[letter].model
    return model_config(OmegaConf.to_container(cfg.model, resolve=True) if model is None else str(model)).name


def check_trainable(cfg: DictConfig, name: str, trajectory: str | None) -> None:
    """A missing SAE can be trained here only from the experiment's model and one of its corpus sources."""
    dc, model = cfg.diff, model_config(OmegaConf.to_container(cfg.model, resolve=True)).name
    command = "python -m reasoning_sae train ..." + (f" sae.init_from=<{trajectory[:-1]}'s sae dir>"
                                                     if trajectory and len(trajectory) > 1 else "")
    where = config_key(name)
    if not dc.train.enabled:
        raise UserError(f"no SAE given for {name} and diff.train.enabled is false: train it ({command}) and set "
                        f"{where}=<its sae dir>")
    if trajectory:
        stage = dc.stagewise.stages[trajectory[-1]]
        if stage_model(cfg, trajectory[-1]) != model:
            raise UserError(f"trajectory {name} needs an SAE of {stage.model}, not of this experiment's {model}: "
                            f"train it ({command} model={stage.model}) and set {where}=<its sae dir>")
        if stage.source not in cfg.data.sources:
            raise UserError(f"stage {trajectory[-1]} trains on source {stage.source!r}, which is not one of "
                            f"data.sources ({sorted(cfg.data.sources)}): fix it or set {where}=<its sae dir>")


def load_given(path: str, name: str, d_in: int, layer: int) -> SparseAutoencoder:
    """An SAE named in the config, checked to read the width and the layer it stands for."""
    sae = SparseAutoencoder.load(path)
    if sae.d_in != d_in:
        raise UserError(f"the SAE given for {name} reads width {sae.d_in}, the main SAE {d_in}: "
                        f"give an SAE of the same model family")
    hook_layer = sae.cfg.metadata.get("hook_layer")
    if hook_layer is not None and int(hook_layer) != layer:
        raise UserError(f"the SAE given for {name} at {path} reads layer {hook_layer}, not {layer}: "
                        f"give the SAE of layer {layer}")
    return sae


def train_config(cfg: DictConfig, d_sae: int, tokens: int, init_from: str | None) -> TrainConfig:
    values = {**OmegaConf.to_container(cfg.sae, resolve=True),
              **OmegaConf.to_container(cfg.diff.train.sae, resolve=True)}
    batch = values.get("batch_size_tokens", 4096)
    tokens = max(batch, tokens // batch * batch)
    return TrainConfig.from_mapping({**values, "d_sae": values.get("d_sae") or d_sae, "training_tokens": tokens,
                                     "init_from": init_from})


def train_missing(cfg: DictConfig, lm, main: SparseAutoencoder, main_layer: int, missing_layers: list[int],
                  missing_traj: list[str], given: dict[str, str], work: Path) -> tuple[dict, dict]:
    """The SAEs of `missing_layers` (on the training mix) and `missing_traj` (on their stage's source, each from
    its prefix's SAE, given or trained here), trained on one cached LM pass over diff.train.sequences sequences."""
    dt, mc = cfg.diff.train, model_config(OmegaConf.to_container(cfg.model, resolve=True))
    corpus = read_corpus(cfg, "train")
    corpus = corpus.select(range(min(dt.sequences or len(corpus), len(corpus))))
    hooks = sorted({resid_post(layer) for layer in [*missing_layers, *([main_layer] if missing_traj else [])]})
    acts, seq_N = collect(lm, corpus_tokens(corpus), hooks, mc.ignore_token_ids,
                          dt.batch_sequences, progress=True, sink_positions=mc.sink_positions)
    source_N = np.asarray(corpus["source"])[seq_N]
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    saes, report = {}, {}
    prefixes = {t[:-1] for t in missing_traj}

    def fit(name: str, acts_ND, layer: int, tokens: int, init_from: str | None, extra: dict) -> None:
        if len(acts_ND) == 0:
            raise UserError(f"no training vectors for {name}: raise diff.train.sequences")
        tc = train_config(cfg, main.d_sae, tokens, init_from)
        metadata = {"model_name": mc.name, "model_revision": mc.revision, "hook_name": resid_post(layer),
                    "hook_layer": layer, "hook_head_index": None, "context_size": cfg.data.context_size,
                    "prepend_bos": bool(cfg.data.prepend_bos), "exclude_special_tokens": list(mc.ignore_token_ids),
                    "sink_positions": mc.sink_positions}
        log.info("diff: training %s on %d vectors (%d tokens%s)", name, len(acts_ND), tc.training_tokens,
                 f", from {init_from}" if init_from else "")
        start = time.time()
        sae, stats = train_sae(acts_ND, tc, metadata, trainer, {"diff_name": name, **extra})
        saes[name] = sae
        if cfg.diff.save_saes or name in prefixes:  # a fine-tune starts from its prefix's directory
            sae.save(work / name, feature_stats=stats)
        report[name] = {"vectors": len(acts_ND), "training_tokens": tc.training_tokens, **extra,
                        **quality(sae, acts_ND), "seconds": round(time.time() - start, 1)}

    for layer in missing_layers:
        fit(f"L{layer}", acts[resid_post(layer)], layer, dt.training_tokens, None, {"data": "training mix"})
    for t in sorted(missing_traj, key=len):
        source = cfg.diff.stagewise.stages[t[-1]].source
        tokens = dt.training_tokens if len(t) == 1 else round(dt.finetune_fraction * dt.training_tokens)
        init = (given.get(t[:-1]) or str(work / t[:-1])) if len(t) > 1 else None
        fit(t, acts[resid_post(main_layer)][source_N == source], main_layer, tokens, init,
            {"data": source, "init_from": t[:-1] or None})
    return saes, report


def presence_table(cfg: DictConfig, main, stage_saes: dict, f_r: list[int], chosen: list[int]) -> pd.DataFrame:
    dc, rows = cfg.diff, []
    for t in [str(t) for t in dc.stagewise.trajectories]:
        stage = dc.stagewise.stages[t[-1]]
        p_fr = matching.presence(main, stage_saes[t], f_r, dc.threshold, dc.chunk)
        p_set = matching.presence(main, stage_saes[t], chosen, dc.threshold, dc.chunk)
        rows.append({"trajectory": label(t), "name": t, "model": stage_model(cfg, t[-1]), "source": stage.source,
                     "init_from": label(t[:-1]) or None, "fr_present": p_fr.count, "fr_total": len(f_r),
                     "fr_share": p_fr.share, "set_present": p_set.count, "set_total": len(chosen),
                     "set_share": p_set.share, "fr_median_best_cosine": float(np.median(p_fr.best_cosine))
                     if len(f_r) else float("nan")})
    return pd.DataFrame(rows, columns=PRESENCE_COLUMNS)


def crosslayer_tables(cfg: DictConfig, lm, main, main_layer: int, layer_saes: dict[int, SparseAutoencoder],
                      f_r: list[int], rand: list[int]) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(per-feature matches, per layer and set counts, tokens scored)."""
    cl = cfg.diff.crosslayer
    features = [*f_r, *rand]
    sets = np.array(["reasoning"] * len(f_r) + ["random"] * len(rand))
    assigned = {layer: matching.assign(main, sae, features, full=cl.assignment == "full", similarity=cl.similarity,
                                       chunk=cfg.diff.chunk)
                for layer, sae in layer_saes.items()}
    token_ids = read_tokens(cfg, "score", cl.sequences)
    mc = model_config(OmegaConf.to_container(cfg.model, resolve=True))
    sums = pair_sums(lm, resid_post(main_layer), main.to(lm.device), features,
                     {resid_post(layer): (sae.to(lm.device), assigned[layer].partners)
                      for layer, sae in layer_saes.items()},
                     token_ids, mc.ignore_token_ids if cl.ignore_special_tokens else (), cl.batch_sequences,
                     progress=True, sink_positions=mc.sink_positions)
    matches, counts, tokens = [], [], 0
    for layer, a in assigned.items():
        s = sums[resid_post(layer)]
        tokens = s.tokens
        scores = matching.matching_scores(s.dot, s.sq_a, s.sq_b)
        classes = matching.classify(scores, cl.same, cl.maybe)
        matches.append(pd.DataFrame({"layer": layer, "set": sets, "feature": a.features, "partner": a.partners,
                                     "decoder_cosine": a.cosine, "matching_score": scores, "class": classes}))
        for name in ("reasoning", "random"):
            mask = sets == name
            c = matching.class_counts(classes[mask])
            counts.append({"layer_from": main_layer, "layer": layer, "set": name, "n": c.total,
                           **c._asdict(), **{f"share_{k}": v for k, v in c.shares().items()},
                           "mean_matching_score": float(scores[mask].mean()) if mask.any() else float("nan"),
                           "mean_decoder_cosine": float(a.cosine[mask].mean()) if mask.any() else float("nan")})
    return pd.concat(matches)[MATCH_COLUMNS], pd.DataFrame(counts)[COUNT_COLUMNS], tokens


def pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.1f}"


def table3(counts: pd.DataFrame, main_layer: int, n_r: int, n_rand: int, tokens: int, model: str,
           similarity: str) -> str:
    """Table 3's layout: per layer, % diff / maybe / same of the reasoning and of the random features."""
    lines = [f"Cross-layer matching from layer {main_layer} of {model}: % of {n_r} reasoning features (F_R) and "
             f"{n_rand} random features, matched by the Hungarian method on decoder "
             f"{'dot products' if similarity == 'dot' else 'cosines'}, matching score over {tokens:,} tokens.", "",
             "| Layer | Reasoning diff | maybe | same | Random diff | maybe | same |", "|---|---|---|---|---|---|---|"]
    for layer, rows in counts.groupby("layer"):
        by_set = rows.set_index("set")
        cells = [pct(by_set.loc[s, f"share_{c}"]) for s in ("reasoning", "random") for c in ("diff", "maybe", "same")]
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fig4(presence: pd.DataFrame, set_name: str, threshold: float) -> str:
    """Fig. 4 as a table: % of F_R and of the chosen set present in each trajectory's SAE."""
    lines = [f"Features of the main SAE present (decoder cosine >= {threshold}) in each stage's SAE, %.", "",
             f"| Stage | F_R | {set_name} |", "|---|---|---|"]
    lines += [f"| {r.trajectory} | {pct(r.fr_share)} ({r.fr_present}/{r.fr_total}) | {pct(r.set_share)} "
              f"({r.set_present}/{r.set_total}) |" for r in presence.itertuples()]
    return "\n".join(lines) + "\n"


def left_out(cfg: DictConfig, trained: dict, main_layer: int, layers: list[int],
             main_tokens: int | None) -> tuple[list[str], str]:
    """What this run leaves out of the paper's setup, as notes and as one README-ready sentence."""
    dc = cfg.diff
    trajectories = [str(t) for t in dc.stagewise.trajectories]
    models = sorted({stage_model(cfg, t[-1]) for t in trajectories})
    notes = []
    if len(models) == 1:
        notes.append(f"the base-model vs reasoning-model axis (one model only, {models[0]}: no stages M and F)")
    if missing := [label(t) for t in PAPER_TRAJECTORIES if t not in trajectories]:
        notes.append(f"the trajectories {', '.join(missing)} of Fig. 4")
    if trained:
        tokens = " / ".join(str(t) for t in sorted({r["training_tokens"] for r in trained.values()}))
        notes.append(f"full-scale SAEs ({', '.join(trained)} are trained here on {tokens} tokens of "
                     f"{dc.train.sequences} cached sequences against the main SAE's {main_tokens}, so their numbers "
                     f"also reflect that scale)")
    stages = "; ".join(f"{s}: {v.source} data" for s, v in dc.stagewise.stages.items()
                       if any(s in t for t in trajectories))
    layer_list = ", ".join(str(x) for x in layers) or "none"
    sentence = (f"The `diff` stage runs stage-wise diffing along {', '.join(label(t) for t in trajectories)} "
                f"({stages}; fine-tunes take {dc.train.finetune_fraction:.0%} of the tokens) and cross-layer "
                f"matching of layer {main_layer} against layers {layer_list}"
                + (f"; it leaves out {'; '.join(notes)}." if notes else ", as in the paper."))
    return notes, sentence


def build(cfg: DictConfig, out: Path) -> dict:
    dc = cfg.diff
    main = SparseAutoencoder.load(run_sae(cfg).path)
    main_hook = main.hook_name()
    main_layer = parse_hook(main_hook, MAX_LAYERS).layer
    check(cfg, main_layer)
    f_r = read_f_r(cfg)
    n_random = min(dc.random_features, main.d_sae - len(set(f_r)))  # a small SAE has fewer to offer
    if n_random < dc.random_features:
        log.warning("diff: %d random features asked for, %d outside F_R: taking those", dc.random_features, n_random)
    rand = matching.random_features(main.d_sae, n_random, cfg.seed, exclude=f_r)
    chosen = rand if dc.features is None else [int(f) for f in dc.features]
    set_name = "random" if dc.features is None else "chosen set"
    matching.check_features(chosen, main.d_sae)

    seconds, start = {}, time.time()
    lm, n_layers = None, cfg.model.get("n_layers")
    if n_layers is None and dc.crosslayer.layers is None and dc.crosslayer.offsets:
        lm = load_model(cfg)  # the offsets need the model's depth
        n_layers = lm.n_layers
    layers = crosslayer_layers(cfg, main_layer, n_layers)
    given = given_saes(cfg)
    trajectories = [str(t) for t in dc.stagewise.trajectories]
    missing_layers = [x for x in layers if f"L{x}" not in given]
    missing_traj = [t for t in trajectories if t not in given]
    for t in missing_traj:
        check_trainable(cfg, t, t)
    for x in missing_layers:
        check_trainable(cfg, f"L{x}", None)
    saes = {name: load_given(path, name, main.d_in, int(name[1:]) if name[1:].isdigit() else main_layer)
            for name, path in given.items()}

    if layers or missing_traj:
        lm = lm or load_model(cfg)
        main.hook_name(lm)  # the main SAE belongs to this model
        for x in layers:
            lm.hook_point(resid_post(x))
        seconds["load_model"] = round(time.time() - start, 1)
    trained = {}
    if missing_layers or missing_traj:
        work = out / "saes"
        new, trained = train_missing(cfg, lm, main, main_layer, missing_layers, missing_traj, given, work)
        saes.update(new)
        seconds["train_saes"] = round(time.time() - start - sum(seconds.values()), 1)
        if not dc.save_saes:
            shutil.rmtree(work, ignore_errors=True)

    presence = presence_table(cfg, main, saes, f_r, chosen)
    presence.to_csv(out / "presence.csv", index=False)
    (out / "presence.md").write_text(fig4(presence, set_name, dc.threshold))
    matches, counts, tokens = crosslayer_tables(cfg, lm, main, main_layer, {x: saes[f"L{x}"] for x in layers},
                                                f_r, rand) if layers else (pd.DataFrame(columns=MATCH_COLUMNS),
                                                                           pd.DataFrame(columns=COUNT_COLUMNS), 0)
    matches.to_csv(out / "matches.csv", index=False)
    counts.to_csv(out / "crosslayer.csv", index=False)
    seconds["presence_and_matching"] = round(time.time() - start - sum(seconds.values()), 1)
    model = model_config(OmegaConf.to_container(cfg.model, resolve=True)).name
    (out / "crosslayer.md").write_text(table3(counts, main_layer, len(f_r), len(rand), tokens, model,
                                              dc.crosslayer.similarity)
                                       if layers else "No layers to match (diff.crosslayer: no layer inside the "
                                                      "model).\n")
    notes, sentence = left_out(cfg, trained, main_layer, layers, main.cfg.metadata.get("tokens_seen"))
    summary = {
        "main": {"hook": main_hook, "d_sae": main.d_sae, "f_r": len(f_r), "random": len(rand), "set": set_name,
                 "set_size": len(chosen)},
        "threshold": dc.threshold,
        "presence": {r.trajectory: {"f_r": r.fr_share, set_name: r.set_share} for r in presence.itertuples()},
        "crosslayer": {f"{r.layer}/{r.set}": {"diff": r.share_diff, "maybe": r.share_maybe, "same": r.share_same}
                       for r in counts.itertuples()},
        "layers": layers,
        "assignment": {"similarity": dc.crosslayer.similarity, "over": dc.crosslayer.assignment},
        "matching_tokens": tokens,
        "trained_here": trained,
        "left_out": notes,
        "readme": sentence,
        "seconds": seconds,
    }
    write_json(out / "summary.json", summary)
    return {k: summary[k] for k in ("presence", "crosslayer", "left_out")}


def run(cfg: DictConfig) -> Path:
    return run_stage(cfg, "diff", CONFIG_KEYS, inputs(cfg), lambda out: build(cfg, out))
