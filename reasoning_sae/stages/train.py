"""The `train` stage: an SAE on the model's residual stream over the corpus stage's training mix.

Writes `sae/` (SAELens format, input scaling folded in, feature stats in sparsity.safetensors), `metrics.json`
(held-out evaluation), `density.png`, and `train_log.csv` with the logged metrics (one row per logged step, across
kills and resumes). Lightning checkpoints live in a work directory beside the artifact until the run finishes, so
`resume=true` continues a killed run exactly. Every setting is checked before anything is read or loaded, and a
checkpoint that resume=true would load is checked to read back.

`train.saes` adds SAEs trained from the same LM pass (train/multi.py), each written as the main one is, under
`saes/<name>/` (sae/, metrics.json, density.png, train_log.csv)."""

import contextlib
import inspect
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from reasoning_sae import config_check
from reasoning_sae.artifacts import (fingerprint, output_dir, path_fingerprint, read_tokens, run_stage, stage_dir,
                                     upstream, upstream_inputs, write_json)
from reasoning_sae.errors import UserError
from reasoning_sae.models import load_lm, model_config, resid_post
from reasoning_sae.sae.io import CFG
from reasoning_sae.seeding import seed_run
from reasoning_sae.settings import Rule, check_setting
from reasoning_sae.train import history
from reasoning_sae.train.build import build_sae
from reasoning_sae.train.config import TrainConfig
from reasoning_sae.train.module import NonFiniteTraining, SAEModule
from reasoning_sae.train.multi import SAESpec, parse_saes
from reasoning_sae.train.quality import density_histogram, sae_quality
from reasoning_sae.train.store import ActivationDataModule, rank_batch_size, shard_bounds

log = logging.getLogger(__name__)
CONFIG_KEYS = ("model", "data", "sae", "trainer")


def validate(cfg: DictConfig) -> TrainConfig:
    """Every setting this stage reads, checked before anything is read, loaded or written: one line per fault."""
    tc = TrainConfig.from_mapping(OmegaConf.to_container(cfg.sae, resolve=True))
    mc = model_config(OmegaConf.to_container(cfg.model, resolve=True))
    if mc.layer is None:
        raise UserError("model.layer is not set: choose the layer whose residual stream the SAE reads")
    check_setting("model.layer", mc.layer, int, Rule(low=0))
    check_setting("model.n_layers", mc.n_layers, int | None, Rule(low=1))
    if mc.n_layers is not None and mc.layer >= mc.n_layers:
        raise UserError(f"model.layer={mc.layer} is out of range: the model has {mc.n_layers} layers, set "
                        f"model.layer to 0-{mc.n_layers - 1}")
    config_check.check(cfg)  # data.context_size, resume, activation_cache, ... (the CLI checked them too)
    logger_class(cfg.logger)
    if tc.init_from and not (Path(tc.init_from) / CFG).is_file():
        raise UserError(f"sae.init_from={tc.init_from} is not an SAE directory (no cfg.json): point it at a trained "
                        f"sae/")
    extra_saes(cfg, tc)
    return tc


def extra_saes(cfg: DictConfig, tc: TrainConfig) -> list[SAESpec]:
    """The checked `train.saes` entries: SAEs trained from the same LM pass as the main one ([]: none)."""
    entries = cfg.train.get("saes") if cfg.get("train") else None
    entries = OmegaConf.to_container(entries, resolve=True) if OmegaConf.is_config(entries) else entries
    if not entries:
        return []
    if not isinstance(entries, list):
        raise UserError(f"train.saes={entries!r}: give a list of {{name: ..., layer: ..., <sae setting>: ...}}")
    mc = model_config(OmegaConf.to_container(cfg.model, resolve=True))
    specs = parse_saes(entries, OmegaConf.to_container(cfg.sae, resolve=True), tc, mc.layer, mc.n_layers)
    if cfg.activation_cache:
        raise UserError("activation_cache=true caches one layer for one SAE: set activation_cache=false to train "
                        "train.saes from one pass")
    for spec in specs:
        if spec.tc.init_from and not (Path(spec.tc.init_from) / CFG).is_file():
            raise UserError(f"train.saes entry {spec.name}: init_from={spec.tc.init_from} is not an SAE directory "
                            f"(no cfg.json): point it at a trained sae/")
    return specs


def config_keys(cfg: DictConfig) -> tuple[str, ...]:
    """What the run's fingerprint covers: `train` only when it lists SAEs, so a single-SAE run keeps its own."""
    return CONFIG_KEYS + ("train",) if cfg.get("train") and cfg.train.get("saes") else CONFIG_KEYS


def work_dir(cfg: DictConfig, ins: dict[str, str]) -> Path:
    """Where a run keeps its checkpoints, activation cache and logs until it finishes: keyed by the fingerprint of
    its settings and inputs, so only the very same run finds (and with resume=true continues) them."""
    return output_dir(cfg, "train").with_name(f".train-work-{fingerprint(cfg, config_keys(cfg), ins)[:16]}")


def checkpoint_step(path: Path) -> int:
    """The step a Lightning checkpoint was written at; reads the small pickle only (tensors are memory-mapped)."""
    return int(torch.load(path, map_location="cpu", mmap=True, weights_only=True)["global_step"])


def check_checkpoint(last: Path) -> None:
    """A checkpoint that resume=true would load must read back: else one line naming it and the way out."""
    try:
        checkpoint_step(last)
    except Exception as err:  # noqa: BLE001 (whatever torch makes of a cut-short zip: OSError, RuntimeError, ...)
        reason = " ".join(f"{type(err).__name__}: {err}".split())[:160]
        earlier = []
        for other in last.parent.glob("*.ckpt"):
            if other != last:
                with contextlib.suppress(Exception):
                    earlier.append((checkpoint_step(other), other))
        also = (f", or copy {max(earlier)[1].name} over it to resume from step {max(earlier)[0]}" if earlier else "")
        raise UserError(f"the checkpoint {last} cannot be read ({reason}), cut short or damaged (e.g. by a kill while "
                        f"it was written): delete it or set resume=false to train from step 0{also}") from None


def checkpoint_every(tc: TrainConfig) -> int:
    return tc.checkpoint_every or max(1, tc.total_steps // 5)


def kept(work: Path, tc: TrainConfig) -> str:
    """What a run stopped by non-finite values leaves to resume, for the end of its message."""
    last = work / "checkpoints" / "last.ckpt"
    with contextlib.suppress(Exception):
        step = checkpoint_step(last)
        return (f"; changed settings train from step 0 (another work folder), and resume=true with these settings "
                f"would replay this run's checkpoint of step {step} ({last}) into the same failure")
    return (f"; no checkpoint of this run was written (the first was due at step {checkpoint_every(tc)}): there is "
            f"nothing to resume")


def corpus_dir(cfg: DictConfig) -> Path:
    return upstream(cfg, "corpus")


def inputs(cfg: DictConfig) -> dict[str, str]:
    if (stage_dir(cfg, "corpus") / "meta.json").is_file() and not (stage_dir(cfg, "corpus") / "train").exists():
        raise UserError("the corpus stage built no training mix (data.train_mix=false): rerun it with "
                        "data.train_mix=true to train an SAE")
    ins = upstream_inputs(cfg, {"corpus": "train"})
    if cfg.sae.get("init_from"):  # the starting weights are an input: a new one retrains
        ins["init_from"] = path_fingerprint(cfg.sae.init_from)
    for spec in extra_saes(cfg, TrainConfig.from_mapping(OmegaConf.to_container(cfg.sae, resolve=True))):
        if spec.tc.init_from:
            ins[f"init_from/{spec.name}"] = path_fingerprint(spec.tc.init_from)
    return ins


def logger_class(logger: DictConfig) -> type | None:
    """The Lightning logger class `logger._target_` names (None: no `_target_`, no logger), or a one-line error."""
    target = logger.get("_target_")
    if target is None:
        return None
    try:
        return get_class(target)
    except Exception as err:  # noqa: BLE001 (Hydra wraps whatever the import raised)
        raise UserError(f"logger._target_={target!r} cannot be imported ({str(err).strip().splitlines()[0]}): "
                        f"give a Lightning logger class, as conf/logger/ does, or logger=none") from None


def make_logger(cfg: DictConfig, save_dir: Path, run_name: str):
    """The configured Lightning logger (`logger._target_`; False without one). The run fills in what only it knows,
    where the config leaves it out and the logger takes it: save_dir (the run's work folder), name (the run's name)
    and config (the resolved config, which W&B records with the run)."""
    cls = logger_class(cfg.logger)
    if cls is None:
        return False
    run = {"save_dir": str(save_dir), "name": run_name, "config": OmegaConf.to_container(cfg, resolve=True)}
    params = inspect.signature(cls).parameters
    any_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    logger = instantiate(cfg.logger, _partial_=True)(
        **{k: v for k, v in run.items() if k not in cfg.logger and (k in params or any_keyword)})
    Path(logger.save_dir).mkdir(parents=True, exist_ok=True)  # W&B falls back to a temporary folder without it
    return logger


def run_name(cfg: DictConfig) -> str:
    job = Path(cfg.job_dir).name if cfg.get("job_dir") else None
    return f"{cfg.experiment_name}-train" + (f"-job{job}" if job else "")


def make_trainer(cfg: DictConfig, tc: TrainConfig, work: Path, logger, multi: bool = False):
    import lightning as L
    from hydra.errors import InstantiationException
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.callbacks import ModelCheckpoint

    from reasoning_sae.train.callbacks import BufferLink
    from reasoning_sae.train.multi import MultiBufferLink

    checkpoint = ModelCheckpoint(dirpath=str(work / "checkpoints"), every_n_train_steps=checkpoint_every(tc),
                                 save_last=True, save_top_k=1, monitor=None)
    try:
        callbacks = [checkpoint, MultiBufferLink() if multi else BufferLink(), *map(instantiate, cfg.callbacks)]
    except InstantiationException as err:
        reason = str(err).strip().splitlines()[0].split(", set env var HYDRA_FULL_ERROR")[0]
        raise UserError(f"callbacks: {reason}: give Lightning callbacks as "
                        f"{{_target_: module.Class, ...}}") from None
    try:
        return L.Trainer(**OmegaConf.to_container(cfg.trainer, resolve=True), max_steps=tc.total_steps,
                         max_epochs=-1, gradient_clip_val=None if multi else tc.grad_clip or None,
                         gradient_clip_algorithm=None if multi else "norm",  # multi: each SAE clips its own
                         log_every_n_steps=tc.log_every, callbacks=callbacks, enable_model_summary=False,
                         logger=logger, default_root_dir=str(work), num_sanity_val_steps=0)
    except (MisconfigurationException, TypeError, ValueError) as err:
        raise UserError(f"Lightning refuses the trainer settings ({str(err).strip().splitlines()[0]}): fix trainer.* "
                        f"(see conf/trainer/)") from None


@contextlib.contextmanager
def one_process_group():
    """Leave no DDP state behind a fit: Lightning keeps the process group and the LOCAL_RANK, MASTER_PORT, ...
    it exported, and the next job of a Hydra multirun (same process) would reuse them instead of starting ranks."""
    environ = dict(os.environ)
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        os.environ.clear()
        os.environ.update(environ)


def check_world(tc: TrainConfig, world: int, n_sequences: int) -> None:
    """sae.batch_size_tokens is the global batch: it must split evenly over the ranks, and each rank needs a shard."""
    if world > n_sequences:
        raise UserError(f"{world} DDP ranks but only {n_sequences} training sequences to shard: use at most "
                        f"{n_sequences} devices (trainer.devices) or a larger corpus (data.*.rows)")
    if tc.batch_size_tokens % world:
        raise UserError(f"sae.batch_size_tokens={tc.batch_size_tokens} does not split over {world} DDP ranks: "
                        f"make it a multiple of {world}")


def build(cfg: DictConfig, out: Path, work: Path) -> dict:
    from lightning.pytorch.utilities import rank_zero_only

    tc = validate(cfg)
    mc = model_config(OmegaConf.to_container(cfg.model, resolve=True))
    token_ids = read_tokens(cfg, "train")
    if token_ids.ndim != 2 or token_ids.shape[1] != cfg.data.context_size:
        raise UserError(f"data.context_size={cfg.data.context_size} but the corpus at {corpus_dir(cfg)} holds "
                        f"sequences of {token_ids.shape[-1]} tokens: rerun the corpus stage with these data settings")
    n_eval = min(tc.eval_sequences, len(token_ids) // 10)
    train_ids, eval_ids = token_ids[: len(token_ids) - n_eval], token_ids[len(token_ids) - n_eval :]
    last = work / "checkpoints" / "last.ckpt"
    resume = cfg.resume and last.is_file()
    if rank_zero_only.rank == 0:  # Lightning's CSV logger empties its file on start: keep what a killed run logged
        history.set_aside(work / "csv" / "metrics.csv", work / history.SEGMENTS, resume)
    specs = extra_saes(cfg, tc)
    logger = make_logger(cfg, work, run_name(cfg))
    trainer = make_trainer(cfg, tc, work, logger, multi=bool(specs))
    world = trainer.world_size
    check_world(tc, world, len(train_ids))
    lm = load_lm(mc)
    hook = resid_post(mc.layer)
    for point in (hook, *(s.hook for s in specs)):
        lm.hook_point(point)  # layer range check
    metadata = {"model_name": mc.name, "model_revision": mc.revision, "hook_name": hook, "hook_layer": mc.layer,
                "hook_head_index": None, "prepend_bos": bool(cfg.data.prepend_bos), "context_size": cfg.data.context_size,
                "dataset_path": str(corpus_dir(cfg) / "train"), "exclude_special_tokens": list(mc.ignore_token_ids),
                "sink_positions": mc.sink_positions,
                "init": tc.init, "sae_lens_training_version": None, "world_size": world,
                "batch_size_tokens": tc.batch_size_tokens, "batch_size_tokens_per_rank": rank_batch_size(
                    tc.batch_size_tokens, world), "rank_shards": shard_bounds(len(train_ids), world)}
    seed_run(tc.seed)
    if specs:
        module, datamodule = multi_module(lm, train_ids, [SAESpec("", mc.layer, hook, tc), *specs], metadata, mc)
    else:
        module = SAEModule(build_sae(tc, lm.d_model, metadata), tc)
        datamodule = ActivationDataModule(lm, train_ids, hook, tc.batch_size_tokens, tc.n_batches_in_buffer,
                                          tc.store_batch_size_prompts, mc.ignore_token_ids, tc.seed,
                                          cache_path=work / "activations.npy" if cfg.activation_cache else None,
                                          sink_positions=mc.sink_positions)
    log.info("training %s on %s: %d steps of %d vectors (%d rank(s))%s", tc.architecture, hook, tc.total_steps,
             tc.batch_size_tokens, world, f", resuming from {last}" if resume else "")
    if specs:
        log.info("and from the same LM pass: %s", ", ".join(f"{s.name} ({s.tc.architecture} on {s.hook})"
                                                            for s in specs))
    with one_process_group():
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if resume else None)
        except NonFiniteTraining as err:
            raise UserError(f"{err}{kept(work, tc)}") from None
    if trainer.global_rank != 0:
        summary = {}
    elif specs:
        summary = finish_all(cfg, module, specs, lm, eval_ids, mc, tc, out, work, hook)
    else:
        summary = finish(cfg, module, lm, eval_ids, mc, tc, out, work, hook)
    if logger:
        logger.log_metrics({f"eval/{k}": v for k, v in summary.items()}, step=tc.total_steps)
        logger.finalize("success")
        from lightning.pytorch.loggers import WandbLogger

        if isinstance(logger, WandbLogger):
            import wandb

            wandb.finish()  # a Hydra multirun runs its jobs in one process: one W&B run per job
    return summary


def finish(cfg, module: SAEModule, lm, eval_ids, mc, tc: TrainConfig, out: Path, work: Path, hook: str) -> dict:
    sae, stats = module.export()
    sae.save(out / "sae", feature_stats=stats)
    metrics = sae_quality(lm, sae, eval_ids, mc.layer, mc.ignore_token_ids,
                                                     sink_positions=mc.sink_positions) if len(eval_ids) else {}
    metrics.update({"sparsity/dead_features": int(module.dead_mask_F(whole_run=True).sum()),
                    "details/n_training_tokens": int(module.tokens_seen), "details/steps": tc.total_steps})
    write_json(out / "metrics.json", metrics)
    (out / "sae" / "README.md").write_text(card(cfg, out / "sae", metrics, mc, tc, int(module.tokens_seen)))
    density_histogram(stats["sparsity"], out / "density.png", f"{mc.name} {hook}, {sae.d_sae} latents")
    history.write_merged(work / "csv" / "metrics.csv", work / history.SEGMENTS, out / "train_log.csv")
    log.info("SAE: L0 %.1f, explained variance %.3f, CE loss score %.3f", metrics.get("metrics/l0", float("nan")),
             metrics.get("metrics/explained_variance", float("nan")), metrics.get("metrics/ce_loss_score", float("nan")))
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def multi_module(lm, train_ids, specs: list[SAESpec], metadata: dict, mc):
    """The host module and data module of a multi-SAE pass (specs[0]: the main SAE); each SAE built as alone."""
    from reasoning_sae.train.multi import MultiActivationDataModule, MultiSAEModule

    saes = [build_sae(s.tc, lm.d_model, {**metadata, "hook_name": s.hook, "hook_layer": s.layer, "init": s.tc.init})
            for s in specs]
    module = MultiSAEModule(saes, [s.tc for s in specs], [f"{s.name}/" if s.name else "" for s in specs])
    return module, MultiActivationDataModule(lm, train_ids, specs, mc.ignore_token_ids, mc.sink_positions)


def finish_all(cfg, module, specs: list[SAESpec], lm, eval_ids, mc, tc: TrainConfig, out: Path, work: Path,
               hook: str) -> dict:
    """The main SAE's artifact as a single run writes it, each other SAE's under saes/<name>/, each log its own."""
    import dataclasses

    from reasoning_sae.train.multi import split_log

    main, *members = module.members
    summary = finish(cfg, main, lm, eval_ids, mc, tc, out, work, hook)
    for spec, member in zip(specs, members, strict=True):
        sub = out / "saes" / spec.name
        sub.mkdir(parents=True, exist_ok=True)
        metrics = finish(cfg, member, lm, eval_ids, dataclasses.replace(mc, layer=spec.layer), spec.tc, sub, work,
                         spec.hook)
        summary.update({f"{spec.name}/{k}": v for k, v in metrics.items()})
    split_log(out / "train_log.csv", {"": out / "train_log.csv",
                                      **{f"{s.name}/": out / "saes" / s.name / "train_log.csv" for s in specs}})
    return summary


def card(cfg, sae_dir: Path, metrics: dict, mc, tc: TrainConfig, tokens: int) -> str:
    from reasoning_sae.artifacts import git_commit, lock_hash
    from reasoning_sae.train.card import model_card

    sparsity = {"topk": f"TopK, k = {tc.k}", "batchtopk": f"BatchTopK, k = {tc.k} per token on average",
                "matryoshka_batchtopk": f"Matryoshka BatchTopK, k = {tc.k}, widths {tc.matryoshka_widths}",
                "jumprelu": f"JumpReLU, {tc.jumprelu_sparsity_loss_mode} L0 coefficient {tc.l0_coefficient:g}",
                }.get(tc.architecture, f"L1 coefficient {tc.l1_coefficient:g}")
    sources = [str(s.path) for s in cfg.data.sources.values() if s.fraction > 0]
    return model_card(json.loads((sae_dir / CFG).read_text()), metrics, model=mc.name, revision=mc.revision, data=sources,
                      experiment=cfg.experiment_name, commit=git_commit(), lock=lock_hash(),
                      training={"architecture": tc.architecture, "sparsity": sparsity, "lr": tc.lr, "seed": tc.seed,
                                "steps": tc.total_steps, "batch": tc.batch_size_tokens, "tokens": tokens})


def run(cfg: DictConfig) -> Path:
    from lightning.pytorch.utilities import rank_zero_only

    validate(cfg)
    ins = inputs(cfg)
    work = work_dir(cfg, ins)
    last = work / "checkpoints" / "last.ckpt"
    if cfg.resume and last.is_file():
        check_checkpoint(last)
    if rank_zero_only.rank != 0:  # another DDP rank of rank 0's run: it trains, rank 0 alone writes the artifact
        with tempfile.TemporaryDirectory() as scratch:
            build(cfg, Path(scratch), work)
        return output_dir(cfg, "train")

    def build_and_clean(out: Path) -> dict:
        summary = build(cfg, out, work)
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
        shutil.rmtree(work / history.SEGMENTS, ignore_errors=True)
        for cache in work.glob("activations*.npy"):
            cache.unlink(missing_ok=True)
        return summary

    fresh = not work.exists()
    try:
        return run_stage(cfg, "train", config_keys(cfg), ins, build_and_clean)
    except BaseException:
        # A run stopped before it had anything to resume from leaves no work folder behind.
        if fresh and not any(work.glob("checkpoints/*.ckpt")) and not any(work.glob("activations*.npy")):
            shutil.rmtree(work, ignore_errors=True)
        raise
