"""The `diff` stage: stage-wise model diffing (paper Sec. 4.4, Fig. 4) and cross-layer matching (App. D.1, Table 3).

Stage-wise: one SAE per trajectory (`S` from scratch, `SD` = S's SAE fine-tuned on stage D's model and data for
30% of the tokens, ...); a feature of the main SAE (the run's sae_source) is present in a trajectory's SAE when its
decoder row has cosine >= diff.threshold with some decoder row there; reported for F_R and a chosen set
(reasoning_sae/diff/presence.py). Cross-layer: the main SAE's F_R and random features are matched to the SAE of each
other layer and scored by the cosine of the pair's activations over the scoring corpus
(reasoning_sae/diff/crosslayer.py). Method choices the paper leaves open: reasoning_sae/diff/matching.py.

SAEs named in diff.stagewise.saes / diff.crosslayer.saes are read from disk (the paper's are made by the train stage,
see the diff block of conf/experiment/paper.yaml); the rest are trained here, small (reasoning_sae/diff/stage_saes.py).

Writes presence.csv and presence.md (Fig. 4), crosslayer.csv and crosslayer.md (Table 3), matches.csv (one row per
matched feature), summary.json (with what this experiment leaves out of the paper's setup) and, with
diff.save_saes, the SAEs trained here under saes/<name>/."""

import shutil
import time
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
from omegaconf import DictConfig

from reasoning_sae.artifacts import (TOP_FEATURES, path_fingerprint, read_f_r, run_sae, run_stage, sae_inputs,
                                     upstream_inputs, write_json)
from reasoning_sae.diff.config import (MAX_LAYERS, FeatureSets, check, config_key, crosslayer_layers, feature_sets,
                                       given_saes, left_out, run_model)
from reasoning_sae.diff.crosslayer import CrossLayer, crosslayer, no_layers
from reasoning_sae.diff.presence import presence_table
from reasoning_sae.diff.stage_saes import load_all_given, missing, train_missing
from reasoning_sae.diff.tables import NO_LAYERS, fig4, table3
from reasoning_sae.errors import UserError
from reasoning_sae.models import load_lm, resid_post
from reasoning_sae.models.hooks import parse_hook
from reasoning_sae.sae import SparseAutoencoder
from reasoning_sae.sae.io import CFG

CONFIG_KEYS = ("diff", "model", "sae", "trainer", "seed")
UPSTREAM = {"corpus": "", "score": TOP_FEATURES}


class Compared(NamedTuple):
    saes: dict[str, SparseAutoencoder]
    """Every SAE the main SAE is compared with, by trajectory or `L<layer>`."""
    trained: dict[str, dict]
    """The report of those trained here."""
    layers: list[int]
    """The layers matched."""
    lm: Any
    """The language model, when something needed it."""


def inputs(cfg: DictConfig) -> dict[str, str]:
    ins = {**upstream_inputs(cfg, UPSTREAM), **sae_inputs(cfg)}
    for name, path in given_saes(cfg).items():
        if not (Path(path) / CFG).is_file():
            raise UserError(f"{config_key(name)}={path} is not an SAE directory (no cfg.json): train it first "
                            f"(python -m reasoning_sae.diff.saes with this run's overrides) or fix the path")
        ins[f"sae:{name}"] = path_fingerprint(path)
    return ins


def compared_saes(cfg: DictConfig, main: SparseAutoencoder, main_layer: int, out: Path, seconds: dict) -> Compared:
    """The SAEs given and those trained here (under out/saes), loading the model only when something needs it;
    `seconds` gets the time taken by each step."""
    dc, start = cfg.diff, time.time()
    lm, n_layers = None, cfg.model.get("n_layers")
    if n_layers is None and dc.crosslayer.layers is None and dc.crosslayer.offsets:
        lm = load_lm(run_model(cfg))  # the offsets need the model's depth
        n_layers = lm.n_layers
    layers = crosslayer_layers(cfg, main_layer, n_layers)
    given = given_saes(cfg)
    todo = missing(cfg, layers, given)
    saes = load_all_given(given, main.d_in, main_layer)
    if layers or todo.trajectories:
        lm = lm or load_lm(run_model(cfg))
        main.hook_name(lm)  # the main SAE belongs to this model
        for x in layers:
            lm.hook_point(resid_post(x))
        seconds["load_model"] = round(time.time() - start, 1)
    trained = {}
    if todo.layers or todo.trajectories:
        work = out / "saes"
        new = train_missing(cfg, lm, main, main_layer, todo, given, work)
        saes.update(new.saes)
        trained = new.report
        seconds["train_saes"] = round(time.time() - start - sum(seconds.values()), 1)
        if not dc.save_saes:
            shutil.rmtree(work, ignore_errors=True)
    return Compared(saes, trained, layers, lm)


def summary(cfg: DictConfig, main: SparseAutoencoder, sets: FeatureSets, presence: pd.DataFrame, matched: CrossLayer,
            layers: list[int], trained: dict, notes: list[str], sentence: str, seconds: dict) -> dict:
    dc = cfg.diff
    return {
        "main": {"hook": main.hook_name(), "d_sae": main.d_sae, "f_r": len(sets.f_r), "random": len(sets.random),
                 "set": sets.name, "set_size": len(sets.chosen)},
        "threshold": dc.threshold,
        "presence": {r.trajectory: {"f_r": r.fr_share, sets.name: r.set_share} for r in presence.itertuples()},
        "crosslayer": {f"{r.layer}/{r.set}": {"diff": r.share_diff, "maybe": r.share_maybe, "same": r.share_same}
                       for r in matched.counts.itertuples()},
        "layers": layers,
        "assignment": {"similarity": dc.crosslayer.similarity, "over": dc.crosslayer.assignment},
        "matching_tokens": matched.tokens,
        "trained_here": trained,
        "left_out": notes,
        "readme": sentence,
        "seconds": seconds,
    }


def build(cfg: DictConfig, out: Path) -> dict:
    dc = cfg.diff
    main = SparseAutoencoder.load(run_sae(cfg).path)
    main_layer = parse_hook(main.hook_name(), MAX_LAYERS).layer
    check(cfg, main_layer)
    sets = feature_sets(cfg, main.d_sae, read_f_r(cfg))
    seconds, start = {}, time.time()
    saes, trained, layers, lm = compared_saes(cfg, main, main_layer, out, seconds)

    presence = presence_table(cfg, main, saes, sets.f_r, sets.chosen)
    presence.to_csv(out / "presence.csv", index=False)
    (out / "presence.md").write_text(fig4(presence, sets.name, dc.threshold))
    matched = crosslayer(cfg, lm, main, main_layer, {x: saes[f"L{x}"] for x in layers}, sets.f_r,
                         sets.random) if layers else no_layers()
    matched.matches.to_csv(out / "matches.csv", index=False)
    matched.counts.to_csv(out / "crosslayer.csv", index=False)
    seconds["presence_and_matching"] = round(time.time() - start - sum(seconds.values()), 1)
    (out / "crosslayer.md").write_text(table3(matched.counts, main_layer, len(sets.f_r), len(sets.random),
                                              matched.tokens, run_model(cfg).name, dc.crosslayer.similarity)
                                       if layers else NO_LAYERS)
    notes, sentence = left_out(cfg, trained, main_layer, layers, main.cfg.metadata.get("tokens_seen"))
    result = summary(cfg, main, sets, presence, matched, layers, trained, notes, sentence, seconds)
    write_json(out / "summary.json", result)
    return {k: result[k] for k in ("presence", "crosslayer", "left_out")}


def run(cfg: DictConfig) -> Path:
    return run_stage(cfg, "diff", CONFIG_KEYS, inputs(cfg), lambda out: build(cfg, out))
