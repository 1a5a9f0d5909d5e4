"""The diff block of the config: the trajectories, layers and SAEs it names, its checks before any model loads, the
feature sets it tracks, and what a run leaves out of the paper's setup (v2 Sec. 4.4, App. D.1)."""

import logging
from typing import NamedTuple

from omegaconf import DictConfig, OmegaConf

from reasoning_sae.diff import matching
from reasoning_sae.errors import UserError
from reasoning_sae.models import ModelConfig, model_config

log = logging.getLogger(__name__)
MAX_LAYERS = 10**6  # layer range unknown until the model loads
PAPER_TRAJECTORIES = ("S", "SD", "SM", "SDF", "SMF")


class FeatureSets(NamedTuple):
    """The main SAE's features the diff stage tracks."""

    f_r: list[int]
    """F_R, best first."""
    random: list[int]
    """Features outside F_R drawn at random (seeded): cross-layer matching's baseline."""
    chosen: list[int]
    """The presence table's second set: diff.features, else `random`."""
    name: str
    """What the tables call `chosen`: random, or chosen set."""


def label(trajectory: str) -> str:
    """`SDF` -> `S->D->F` (the paper's Fig. 4 labels)."""
    return "->".join(trajectory)


def trajectories(cfg: DictConfig) -> list[str]:
    return [str(t) for t in cfg.diff.stagewise.trajectories or []]


def run_model(cfg: DictConfig) -> ModelConfig:
    """The experiment's model."""
    return model_config(OmegaConf.to_container(cfg.model, resolve=True))


def stage_model(cfg: DictConfig, letter: str) -> str:
    """The resolved model name of a stage letter (null: the experiment's model)."""
    model = cfg.diff.stagewise.stages[letter].model
    return run_model(cfg).name if model is None else model_config(str(model)).name


def given_saes(cfg: DictConfig) -> dict[str, str]:
    """SAE directories named in the config for the trajectories and layers this run uses: name or `L<layer>` -> path
    (a config may name SAEs for more layers than diff.crosslayer.layers picks)."""
    dc = cfg.diff
    used = set(trajectories(cfg))
    layers = None if dc.crosslayer.layers is None else {int(layer) for layer in dc.crosslayer.layers}
    return {**{str(t): str(p) for t, p in dc.stagewise.saes.items() if str(t) in used},
            **{f"L{int(layer)}": str(p) for layer, p in dc.crosslayer.saes.items()
               if layers is None or int(layer) in layers}}


def config_key(name: str) -> str:
    """Where the SAE of a trajectory or `L<layer>` is named in the config."""
    return f"diff.crosslayer.saes.{name[1:]}" if name[1:].isdigit() else f"diff.stagewise.saes.{name}"


def check(cfg: DictConfig, main_layer: int) -> None:
    """Everything about the diff block that can be wrong, before any model is loaded."""
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
    check_layers(cfg, main_layer)
    check_trajectories(cfg)


def check_layers(cfg: DictConfig, main_layer: int) -> None:
    n_layers = cfg.model.get("n_layers") or MAX_LAYERS
    for layer in cfg.diff.crosslayer.layers or ():
        if not 0 <= int(layer) < n_layers:
            raise UserError(f"diff.crosslayer.layers: layer {layer} is out of range: the model has {n_layers} "
                            f"layers (0-{n_layers - 1})")
        if int(layer) == main_layer:
            raise UserError(f"diff.crosslayer.layers lists {layer}, the main SAE's own layer: list other layers")


def check_trajectories(cfg: DictConfig) -> None:
    stages = cfg.diff.stagewise.stages
    for letter in stages:
        if not (len(str(letter)) == 1 and str(letter).isalpha()):
            raise UserError(f"diff.stagewise.stages key {letter!r} must be one letter (S, D, M, F in the paper)")
    listed = trajectories(cfg)
    for t in listed:
        unknown = sorted(set(t) - set(stages))
        if not t or unknown:
            raise UserError(f"trajectory {t!r} uses stage(s) {unknown} not in diff.stagewise.stages "
                            f"({sorted(stages)}): define them or fix diff.stagewise.trajectories")
        if len(t) > 1 and t[:-1] not in listed:
            raise UserError(f"trajectory {t} is fine-tuned from {t[:-1]}, which is not in "
                            f"diff.stagewise.trajectories: add {t[:-1]}")


def crosslayer_layers(cfg: DictConfig, main_layer: int, n_layers: int | None) -> list[int]:
    """diff.crosslayer.layers, or else the main layer plus each of diff.crosslayer.offsets inside the model."""
    cl = cfg.diff.crosslayer
    if cl.layers is not None:
        return [int(x) for x in cl.layers]
    inside = range(n_layers or MAX_LAYERS)
    return [main_layer + int(o) for o in cl.offsets if int(o) != 0 and main_layer + int(o) in inside]


def feature_sets(cfg: DictConfig, d_sae: int, f_r: list[int]) -> FeatureSets:
    """F_R, diff.random_features random features outside it (fewer when the SAE has fewer) and the chosen set."""
    dc = cfg.diff
    n_random = min(dc.random_features, d_sae - len(set(f_r)))
    if n_random < dc.random_features:
        log.warning("diff: %d random features asked for, %d outside F_R: taking those", dc.random_features, n_random)
    rand = matching.random_features(d_sae, n_random, cfg.seed, exclude=f_r)
    chosen = rand if dc.features is None else [int(f) for f in dc.features]
    matching.check_features(chosen, d_sae)
    return FeatureSets(f_r, rand, chosen, "random" if dc.features is None else "chosen set")


def left_out(cfg: DictConfig, trained: dict, main_layer: int, layers: list[int],
             main_tokens: int | None) -> tuple[list[str], str]:
    """What this run leaves out of the paper's setup, as notes and as one README-ready sentence."""
    dc = cfg.diff
    listed = trajectories(cfg)
    models = sorted({stage_model(cfg, t[-1]) for t in listed})
    notes = []
    if len(models) == 1:
        notes.append(f"the base-model vs reasoning-model axis (one model only, {models[0]}: no stages M and F)")
    if missing := [label(t) for t in PAPER_TRAJECTORIES if t not in listed]:
        notes.append(f"the trajectories {', '.join(missing)} of Fig. 4")
    if trained:
        tokens = " / ".join(str(t) for t in sorted({r["training_tokens"] for r in trained.values()}))
        notes.append(f"full-scale SAEs ({', '.join(trained)} are trained here on {tokens} tokens of "
                     f"{dc.train.sequences} cached sequences against the main SAE's {main_tokens}, so their numbers "
                     f"also reflect that scale)")
    stages = "; ".join(f"{s}: {v.source} data" for s, v in dc.stagewise.stages.items() if any(s in t for t in listed))
    layer_list = ", ".join(str(x) for x in layers) or "none"
    sentence = (f"The `diff` stage runs stage-wise diffing along {', '.join(label(t) for t in listed)} "
                f"({stages}; fine-tunes take {dc.train.finetune_fraction:.0%} of the tokens) and cross-layer "
                f"matching of layer {main_layer} against layers {layer_list}"
                + (f"; it leaves out {'; '.join(notes)}." if notes else ", as in the paper."))
    return notes, sentence
