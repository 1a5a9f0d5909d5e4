"""The SAEs the diff stage compares the main SAE with: those the config names (diff.stagewise.saes,
diff.crosslayer.saes), loaded and checked, and the rest trained here, small, on one cached LM pass over
diff.train.sequences training sequences (diff.train.enabled=false: a missing SAE is an error).

They use the experiment's sae settings with diff.train.sae on top (the demo: another seed than the main SAE, whose
initialisation short runs would otherwise share). A layer's SAE trains on the training mix; a trajectory's on its last
stage's source at the main SAE's layer, a fine-tune starting from its prefix's SAE (given, or trained here first) and
rerunning the whole schedule (lambda warm-up, LR decay) over diff.train.finetune_fraction of the tokens: one reading
of v2 Sec. 4.4's "setup as in Sec. 4.1", which leaves the fine-tunes' schedule open."""

import logging
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from reasoning_sae.artifacts import corpus_tokens, read_corpus
from reasoning_sae.diff.activations import collect
from reasoning_sae.diff.config import config_key, run_model, stage_model, trajectories
from reasoning_sae.diff.training import quality, train_sae
from reasoning_sae.errors import UserError
from reasoning_sae.models import resid_post
from reasoning_sae.sae import SparseAutoencoder
from reasoning_sae.train.config import TrainConfig

log = logging.getLogger(__name__)


class Missing(NamedTuple):
    """The SAEs the config does not name, to train here."""

    layers: list[int]
    trajectories: list[str]


class Job(NamedTuple):
    """One SAE trained here."""

    name: str
    """The trajectory, or `L<layer>`."""
    layer: int
    tokens: int
    init_from: str | None
    """The SAE directory a fine-tune starts from."""
    source: str | None
    """The corpus source it trains on (a trajectory's last stage); None: the whole training mix (a layer's SAE)."""

    def about(self) -> dict:
        """Its data and start, as the report and the SAE's metadata record them."""
        if self.source is None:
            return {"data": "training mix"}
        return {"data": self.source, "init_from": self.name[:-1] or None}


class Trained(NamedTuple):
    saes: dict[str, SparseAutoencoder]
    report: dict[str, dict]
    """Per SAE: vectors, training tokens, data, L0, explained variance, seconds."""


def check_trainable(cfg: DictConfig, name: str, trajectory: str | None) -> None:
    """A missing SAE can be trained here only from the experiment's model and one of its corpus sources."""
    dc, model = cfg.diff, run_model(cfg).name
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


def missing(cfg: DictConfig, layers: list[int], given: dict[str, str]) -> Missing:
    """The layers and trajectories without a given SAE, each checked to be trainable here."""
    todo = Missing([x for x in layers if f"L{x}" not in given], [t for t in trajectories(cfg) if t not in given])
    for t in todo.trajectories:
        check_trainable(cfg, t, t)
    for x in todo.layers:
        check_trainable(cfg, f"L{x}", None)
    return todo


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


def load_all_given(given: dict[str, str], d_in: int, main_layer: int) -> dict[str, SparseAutoencoder]:
    """Every SAE named in the config: `L<layer>` at its layer, a trajectory's at the main SAE's."""
    return {name: load_given(path, name, d_in, int(name[1:]) if name[1:].isdigit() else main_layer)
            for name, path in given.items()}


def train_config(cfg: DictConfig, d_sae: int, tokens: int, init_from: str | None) -> TrainConfig:
    """The experiment's sae settings with diff.train.sae on top, for `tokens` rounded down to whole batches."""
    values = {**OmegaConf.to_container(cfg.sae, resolve=True),
              **OmegaConf.to_container(cfg.diff.train.sae, resolve=True)}
    batch = values.get("batch_size_tokens", 4096)
    tokens = max(batch, tokens // batch * batch)
    return TrainConfig.from_mapping({**values, "d_sae": values.get("d_sae") or d_sae, "training_tokens": tokens,
                                     "init_from": init_from})


def jobs(cfg: DictConfig, main_layer: int, todo: Missing, given: dict[str, str], work: Path) -> list[Job]:
    """The missing layers' SAEs, then the trajectories' shortest first (a fine-tune after the SAE it starts from)."""
    dt = cfg.diff.train
    planned = [Job(f"L{layer}", layer, dt.training_tokens, None, None) for layer in todo.layers]
    for t in sorted(todo.trajectories, key=len):
        tokens = dt.training_tokens if len(t) == 1 else round(dt.finetune_fraction * dt.training_tokens)
        init = (given.get(t[:-1]) or str(work / t[:-1])) if len(t) > 1 else None
        planned.append(Job(t, main_layer, tokens, init, cfg.diff.stagewise.stages[t[-1]].source))
    return planned


def training_vectors(cfg: DictConfig, lm, hooks: list[str]) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """One LM pass over the first diff.train.sequences training sequences: the vectors at each hook [N, d_model]
    and the corpus source of each [N]."""
    dt, mc = cfg.diff.train, run_model(cfg)
    corpus = read_corpus(cfg, "train")
    corpus = corpus.select(range(min(dt.sequences or len(corpus), len(corpus))))
    acts, seq_N = collect(lm, corpus_tokens(corpus), hooks, mc.ignore_token_ids,
                          dt.batch_sequences, progress=True, sink_positions=mc.sink_positions)
    return acts, np.asarray(corpus["source"])[seq_N]


def sae_metadata(cfg: DictConfig, layer: int) -> dict:
    """What an SAE trained here records about the activations it reads."""
    mc = run_model(cfg)
    return {"model_name": mc.name, "model_revision": mc.revision, "hook_name": resid_post(layer),
            "hook_layer": layer, "hook_head_index": None, "context_size": cfg.data.context_size,
            "prepend_bos": bool(cfg.data.prepend_bos), "exclude_special_tokens": list(mc.ignore_token_ids),
            "sink_positions": mc.sink_positions}


def fit(cfg: DictConfig, job: Job, acts_ND: torch.Tensor, d_sae: int,
        work: Path, save: bool) -> tuple[SparseAutoencoder, dict]:
    """The job's SAE trained on `acts_ND` (saved under work/<name> when `save`), and its report."""
    if len(acts_ND) == 0:
        raise UserError(f"no training vectors for {job.name}: raise diff.train.sequences")
    tc = train_config(cfg, d_sae, job.tokens, job.init_from)
    log.info("diff: training %s on %d vectors (%d tokens%s)", job.name, len(acts_ND), tc.training_tokens,
             f", from {job.init_from}" if job.init_from else "")
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    start = time.time()
    sae, stats = train_sae(acts_ND, tc, sae_metadata(cfg, job.layer), trainer, {"diff_name": job.name, **job.about()})
    if save:
        sae.save(work / job.name, feature_stats=stats)
    return sae, {"vectors": len(acts_ND), "training_tokens": tc.training_tokens, **job.about(),
                 **quality(sae, acts_ND), "seconds": round(time.time() - start, 1)}


def train_missing(cfg: DictConfig, lm, main: SparseAutoencoder, main_layer: int, todo: Missing,
                  given: dict[str, str], work: Path) -> Trained:
    """The SAEs of `todo` (layers on the training mix; trajectories on their stage's source, each from its prefix's
    SAE, given or trained here), trained on one cached LM pass over diff.train.sequences sequences."""
    planned = jobs(cfg, main_layer, todo, given, work)
    acts, source_N = training_vectors(cfg, lm, sorted({resid_post(job.layer) for job in planned}))
    prefixes = {t[:-1] for t in todo.trajectories}
    saes, report = {}, {}
    for job in planned:
        acts_ND = acts[resid_post(job.layer)]
        if job.source is not None:
            acts_ND = acts_ND[source_N == job.source]
        save = cfg.diff.save_saes or job.name in prefixes  # a fine-tune starts from its prefix's directory
        saes[job.name], report[job.name] = fit(cfg, job, acts_ND, main.d_sae, work, save)
    return Trained(saes, report)
