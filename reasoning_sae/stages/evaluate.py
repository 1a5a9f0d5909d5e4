"""The `evaluate` stage (paper Sec. 4.3, Tables 1-2): lm-eval runs of the steered model over
features x gammas x benchmarks (plus the unsteered baseline and the word-ban ablation).

Each cell is computed once into `artifacts/<exp>/evaluate-cells/<task>/<label>-<hash>/` (lm-eval result and sample
files, `metrics.json`, `attempts.parquet`); the stage writes `results.csv` (one row per cell and metric),
`attempts.parquet` (one row per cell, problem and sampled answer: the tables' intervals), `table.md` (Table 1 layout)
and `wordban.md` (Table 2 layout), and logs them to W&B."""

import functools
import json
import logging
import math
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from reasoning_sae import __version__
from reasoning_sae.artifacts import (atomic_dir, path_fingerprint, read_diffmean, read_f_max, read_f_r, run_sae,
                                     run_stage, sae_inputs, stage_dir, upstream_inputs)
from reasoning_sae.errors import UserError
from reasoning_sae.evaluate.cells import Cell, cell_key, feature_sets, grid
from reasoning_sae.evaluate.attempts import ATTEMPTS, cell_attempts
from reasoning_sae.evaluate.runner import evaluate_cell, load_cell
from reasoning_sae.evaluate.tables import results_frame, table1, table2
from reasoning_sae.models import model_config
from reasoning_sae.sae.io import CFG
from reasoning_sae.sae.source import check_feature_ids

log = logging.getLogger(__name__)
CONFIG_KEYS = ("steering", "benchmark", "model", "seed")
UNKEYED_BATCH_SIZE = 8  # every HF cell had it before the batch size entered the key: absent for it, they keep theirs
RECORDS = "attempts.parquet v1"  # what the stage writes besides lm-eval's files and results.csv


def steering_features(cfg: DictConfig) -> list:
    """steering.features, or the first top_n features of the score stage's F_R for `top`."""
    features = cfg.steering.features
    if features == "top":
        return read_f_r(cfg)[: cfg.steering.top_n]
    if isinstance(features, str) or not OmegaConf.is_list(features):
        raise UserError(f"steering.features={features!r}: give a list of feature ids or `top`")
    return list(features)


def sae_path(cfg: DictConfig) -> Path:
    """The run's SAE (sae_source): the one f_max was measured on."""
    return run_sae(cfg).path


def cells(cfg: DictConfig) -> list[Cell]:
    bc = cfg.benchmark
    seeds = list(bc.word_ban.seeds) if bc.word_ban.enabled else None
    if not all(isinstance(g, (int, float)) and math.isfinite(g) for g in cfg.steering.gammas):
        raise UserError(f"steering.gammas must be finite numbers, got {list(cfg.steering.gammas)}")
    return grid(list(bc.tasks), steering_features(cfg), list(cfg.steering.gammas), cfg.steering.baseline, seeds,
                vectors=list(cfg.steering.vectors), force=budget_min(cfg))


def budget_min(cfg: DictConfig) -> int | None:
    """benchmark.budget_forcing's minimum thinking length (None: off), checked (evaluate/budget.py)."""
    from reasoning_sae.evaluate.budget import budget_setting

    forcing = budget_setting(cfg.benchmark)
    return None if forcing is None else forcing.min_tokens


def inputs(cfg: DictConfig, grid_cells: list[Cell]) -> dict[str, str]:
    """Fingerprints of what the cells read: vocab always, the SAE and f_max when steering, a vector's file (its
    content) when a cell steers with it."""
    found = upstream_inputs(cfg, {"vocab": "vocabulary.json"})
    for name in dict.fromkeys(c.vector for c in grid_cells if c.vector):
        found[name] = path_fingerprint(vector_file(cfg, name)[0])
    if any(c.features or c.vector for c in grid_cells):
        found.update(sae_inputs(cfg))
        if cfg.steering.f_max == "interpret":
            found.update(upstream_inputs(cfg, {"interpret": "f_max.json"}))
    return found


VECTOR_FILES = {"diffmean": read_diffmean}  # steering.vectors -> its reader: (path, vector, metadata)


def vector_file(cfg: DictConfig, name: str):
    if name not in VECTOR_FILES:
        raise UserError(f"unknown steering vector {name!r}: use one of {', '.join(VECTOR_FILES)}")
    return VECTOR_FILES[name](cfg)


def reference_features(cfg: DictConfig) -> tuple[int, ...]:
    """The feature set whose update norm the steering vectors take: the grid's first (the top feature of F_R with
    steering.features=top)."""
    sets = feature_sets(steering_features(cfg))
    if not sets:
        raise UserError("steering.vectors are scaled to the update norm of the first steered feature set "
                        "(gamma * f_max * ||W_dec[i]||), but steering.features is empty: give features or top, "
                        "or steering.vectors=[]")
    return sets[0]


def f_max_for(cfg: DictConfig, features: tuple[int, ...]) -> list[float] | None:
    """f_max per feature as steering.f_max says (None: the SAE's recorded max activation)."""
    source = cfg.steering.f_max
    if source == "sae":
        return None
    if source == "interpret":
        table = read_f_max(cfg, run_sae(cfg).fingerprint)
        missing = [f for f in features if f not in table]
        if missing:
            raise UserError(f"the interpret stage has no f_max for features {missing}: add them to "
                            f"interpret.extra_features and rerun it, or set steering.f_max=sae or a number")
        return [table[f] for f in features]
    try:
        return [float(source)] * len(features)
    except (TypeError, ValueError) as err:
        raise UserError(f"steering.f_max={source!r}: use interpret, sae or a number") from err


class Context:
    """What the cells of one run share: the loaded model (on first need), vocabulary, ban word lists."""

    def __init__(self, cfg: DictConfig, found_inputs: dict, grid_cells: list[Cell] = ()):
        from reasoning_sae.vocab.vocabulary import load_vocabulary

        self.cfg, self.inputs, self.cells = cfg, found_inputs, list(grid_cells)
        self.vocabulary = load_vocabulary(stage_dir(cfg, "vocab") / "vocabulary.json")
        self._lm = None

    @property
    def lm(self):
        if self._lm is None:
            from reasoning_sae.models import load_lm

            self._lm = load_lm(model_config(OmegaConf.to_container(self.cfg.model, resolve=True)))
        return self._lm

    @functools.cached_property
    def tokenizer(self):
        """The model's tokenizer: the loaded model's, else the tokenizer alone (no weights loaded for it)."""
        from reasoning_sae.models.loading import load_tokenizer

        if self._lm is not None:
            return self._lm.tokenizer
        return load_tokenizer(model_config(OmegaConf.to_container(self.cfg.model, resolve=True)))

    def ban_forms(self, ban: str | None) -> list[str] | None:
        if ban is None:
            return None
        if ban == "reason":
            return self.vocabulary
        from reasoning_sae.evaluate.wordban import random_forms

        return random_forms(self.vocabulary, self.frequencies, seed=int(ban.removeprefix("random-")))

    @functools.cached_property
    def frequencies(self) -> pd.DataFrame:
        """The vocab stage's word table, read once for every random-ban cell."""
        return pd.read_parquet(stage_dir(self.cfg, "vocab") / "frequencies.parquet")

    def key_context(self, cell: Cell) -> dict:
        """Everything besides the cell itself that its result depends on."""
        sc, bc = self.cfg.steering, self.cfg.benchmark
        steering = {"sae": self.inputs.get("sae"), "mode": sc.mode, "positions": sc.positions,
                    "f_max": f_max_for(self.cfg, cell.features)} if cell.features else None
        if steering and sc.get("site", "resid_post") != "resid_post":  # absent for resid_post: old cells keep keys
            steering["site"] = sc.site
        if cell.vector:  # the vector's file and the norm it is scaled to (reference features, f_max, SAE)
            steering = {"vector": cell.vector, "file": self.inputs.get(cell.vector), "sae": self.inputs.get("sae"),
                        "positions": sc.positions, **self.vector_norm}
        data = bc.data_files.get(cell.task) if bc.data_files else None
        context = {"model": OmegaConf.to_container(self.cfg.model, resolve=True), "steering": steering,
                   "ban": self.ban_forms(cell.ban), "ban_scope": bc.word_ban.scope if cell.ban else None,
                   "data": path_fingerprint(data) if data else None, "vocabulary": self.vocabulary,
                   "settings": {k: bc[k] for k in ("limit", "repeats", "max_gen_toks", "apply_chat_template")},
                   "seed": self.cfg.seed, "version": __version__}
        if bc.engine != "hf":  # absent for hf, so the HF cells keep their keys; a vLLM cell never reuses an HF one
            context["engine"] = {"name": bc.engine, "max_model_len": bc.get("max_model_len")}
        elif bc.batch_size != UNKEYED_BATCH_SIZE:
            # lm-eval's HF batches draw their samples from one random stream: another batching, other samples
            context["settings"]["batch_size"] = bc.batch_size
        if cell.force is not None:  # absent otherwise, so the other cells keep their keys (the minimum: in the cell)
            context["budget_forcing"] = {k: bc.budget_forcing[k] for k in ("word", "max_forces")}
        return {**context, **fidelity_key(self.cfg, cell.task)}

    @functools.cached_property
    def vector_norm(self) -> dict:
        """What the steering vectors are scaled to: ||sum_i f_max_i W_dec[i]|| over the reference features (the
        update of `add` at gamma 1; times the cell's gamma when it steers)."""
        from reasoning_sae.sae import SparseAutoencoder
        from reasoning_sae.steering import update_norm

        features = reference_features(self.cfg)
        f_max = f_max_for(self.cfg, features)
        norm = update_norm(SparseAutoencoder.load(sae_path(self.cfg)), list(features), f_max)
        return {"reference": list(features), "f_max": f_max, "norm": norm}

    @functools.cached_property
    def steer_layer(self) -> int:
        """The layer every vLLM cell steers (the run's SAE's hook; model.layer when no cell steers): one engine
        serves the baseline, steered and word-ban cells alike."""
        return steer_layer(self.cfg, any(c.features or c.vector for c in self.cells))


def model_for(ctx: Context, cell: Cell):
    """The lm-eval model for a cell: HF (`sae_steered`) or vLLM (`sae_steered_vllm`)."""
    cfg, bc = ctx.cfg, ctx.cfg.benchmark
    steering = {}
    if cell.features:
        steering = {"sae": str(sae_path(cfg)), "features": list(cell.features), "gamma": cell.gamma,
                    "mode": cfg.steering.mode, "positions": cfg.steering.positions,
                    "f_max": f_max_for(cfg, cell.features), "site": cfg.steering.get("site", "resid_post")}
    if cell.vector:
        steering = {"vector": str(vector_file(cfg, cell.vector)[0]), "vector_norm": ctx.vector_norm["norm"],
                    "gamma": cell.gamma, "positions": cfg.steering.positions}
    ban = {"ban": ctx.ban_forms(cell.ban), "ban_scope": bc.word_ban.scope} if cell.ban else {}
    forcing = {"min_thinking_tokens": cell.force, "force_word": bc.budget_forcing.word,
               "max_forces": bc.budget_forcing.max_forces} if cell.force is not None else {}
    if bc.engine == "vllm":
        from reasoning_sae.lm_eval.vllm import SteeredVLLM

        return SteeredVLLM(**vllm_engine_args(ctx), **steering, **ban, **forcing)
    if bc.engine != "hf":
        raise UserError(f"unknown benchmark.engine {bc.engine!r}: use hf or vllm")
    from reasoning_sae.lm_eval.model import SteeredLM

    return SteeredLM(pretrained=ctx.lm, batch_size=bc.batch_size, max_gen_toks=bc.max_gen_toks, **steering, **ban,
                     **forcing)


def steer_layer(cfg: DictConfig, steering: bool) -> int:
    """The layer of the run's SAE hook when `steering`, else model.layer (read from cfg.json: no weights loaded)."""
    if not steering:
        return int(cfg.model.layer)
    from reasoning_sae.models.hooks import parse_hook
    from reasoning_sae.sae.config import SAEConfig

    sae = SAEConfig.from_sae_lens(json.loads((sae_path(cfg) / CFG).read_text()))
    hook = sae.metadata.get("hook_name")
    if not hook:
        raise UserError("the SAE's cfg.json names no hook_name: add metadata.hook_name "
                        "(e.g. blocks.19.hook_resid_post)")
    point = parse_hook(hook, int(cfg.model.n_layers))
    if point.kind != "hook_resid_post":
        raise UserError(f"benchmark.engine=vllm steers blocks.L.hook_resid_post, not the SAE's {hook}: "
                        f"use benchmark.engine=hf")
    return point.layer


def vllm_engine_args(ctx: Context) -> dict:
    """`sae_steered_vllm` model args shared by every cell of a run, so that all cells run on one engine: the model
    in its resolved dtype (float32 on CPU, as the HF engine), steered at the run's layer, the run's seed."""
    from reasoning_sae.models.loading import resolve_device, resolve_dtype

    cfg, bc = ctx.cfg, ctx.cfg.benchmark
    mc = model_config(OmegaConf.to_container(cfg.model, resolve=True))
    dtype = str(resolve_dtype(mc.dtype, resolve_device(mc.device))).removeprefix("torch.")
    args = {"pretrained": mc.name, "revision": mc.revision, "trust_remote_code": mc.trust_remote_code, "dtype": dtype,
            "steer_layer": ctx.steer_layer, "max_gen_toks": bc.max_gen_toks, "batch_size": bc.batch_size,
            "seed": cfg.seed}
    if bc.get("max_model_len") is not None:
        args["max_model_len"] = int(bc.max_model_len)
    return args


def fidelity_settings(cfg: DictConfig) -> dict:
    """benchmark.grading, .verifier, .gpqa_shuffle and .gpqa_seed as task_config takes them (defaults where unset)."""
    from reasoning_sae.evaluate.benchmarks import GPQA_SEED

    bc = cfg.benchmark
    verifier, seed = bc.get("verifier"), bc.get("gpqa_seed", GPQA_SEED)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(f"benchmark.gpqa_seed={seed!r}: give an integer (both reference orders use 0)")
    return {"grading": bc.get("grading") or "math_verify",
            "verifier": OmegaConf.to_container(verifier, resolve=True) if verifier is not None else None,
            "gpqa_shuffle": bc.get("gpqa_shuffle") or "simple_evals", "gpqa_seed": seed}


def fidelity_key(cfg: DictConfig, task: str) -> dict:
    """The grading and (for GPQA) option order in a cell's key; absent at their defaults, so older cells keep their
    keys, and cells graded or ordered differently never reuse each other."""
    from reasoning_sae.evaluate.benchmarks import GPQA_SEED, benchmark_of
    from reasoning_sae.evaluate.grading import Grading

    settings, key = fidelity_settings(cfg), {}
    grading = Grading.from_settings(settings["grading"], settings["verifier"]).key()
    if grading is not None:
        key["grading"] = grading
    order = (settings["gpqa_shuffle"], settings["gpqa_seed"])
    if benchmark_of(task) == "gpqa_diamond_openai" and order != ("simple_evals", GPQA_SEED):
        key["gpqa_order"] = dict(zip(("shuffle", "seed"), order))
    return key


def task_spec(cfg: DictConfig, task: str):
    from reasoning_sae.evaluate.benchmarks import task_config

    bc = cfg.benchmark
    local = bc.data_files.get(task) if bc.data_files else None
    return task_config(task, local_path=local, max_gen_toks=bc.max_gen_toks, repeats=bc.repeats,
                       response_prefix=cfg.model.get("response_prefix"), **fidelity_settings(cfg))


def cell_dir(cfg: DictConfig, ctx: Context, cell: Cell) -> Path:
    return stage_dir(cfg, "evaluate-cells") / cell.task / cell_key(cell, ctx.key_context(cell))


def compute_cell(ctx: Context, cell: Cell) -> dict:
    """A cell's metrics record: from its cache, or computed now (atomically) and cached."""
    cfg = ctx.cfg
    path = cell_dir(cfg, ctx, cell)
    if (path / "metrics.json").is_file() and not cfg.force:
        return load_cell(path)
    log.info("evaluate: %s on %s", cell.label, cell.task)
    spec = task_spec(cfg, cell.task)
    model = model_for(ctx, cell)
    with atomic_dir(path) as tmp:
        evaluate_cell(model, cell, spec, ctx.vocabulary, tmp, limit=cfg.benchmark.limit, seed=cfg.seed,
                      batch_size=cfg.benchmark.batch_size, apply_chat_template=cfg.benchmark.apply_chat_template)
    return load_cell(path)


def log_wandb(cfg: DictConfig, frame: pd.DataFrame, out: Path) -> None:
    if not str(cfg.logger.get("_target_", "")).endswith("WandbLogger"):  # the train stage's logger is W&B's
        return
    import wandb

    wandb_dir = stage_dir(cfg, "logs")
    wandb_dir.mkdir(parents=True, exist_ok=True)
    # the mode goes to init, not os.environ: wandb reads its environment once per process, and in `reproduce` the
    # train stage's run came first
    run = wandb.init(project=cfg.logger.project, name=f"evaluate-{cfg.experiment_name}", dir=str(wandb_dir),
                     mode=cfg.logger.get("mode", "offline"),
                     config=OmegaConf.to_container(cfg, resolve=True), job_type="evaluate", reinit="finish_previous")
    run.log({"evaluate/results": wandb.Table(dataframe=frame)})
    for record in frame.to_dict("records"):
        run.summary[f"{record['task']}/{record['label']}/{record['metric']}"] = record["value"]
    run.finish()


def collect_attempts(ctx: Context, grid_cells: list[Cell]) -> pd.DataFrame:
    """Every cell's per-attempt records (evaluate/attempts.py) under its task and label; a cell cached before they
    were written gets them from its samples and `ctx.tokenizer`."""
    think_end = model_config(OmegaConf.to_container(ctx.cfg.model, resolve=True)).think_end
    frames = [cell_attempts(cell_dir(ctx.cfg, ctx, cell), cell.task, lambda: ctx.tokenizer, think_end)
              .assign(task=cell.task, label=cell.label) for cell in grid_cells]
    frame = pd.concat(frames, ignore_index=True)
    return frame[["task", "label", *(c for c in frame.columns if c not in ("task", "label"))]]


def build(cfg: DictConfig, out: Path, grid_cells: list[Cell], found: dict) -> dict:
    ctx = Context(cfg, found, grid_cells)
    try:
        records = [compute_cell(ctx, cell) for cell in grid_cells]
    finally:
        if cfg.benchmark.engine == "vllm":  # free the engine's memory (a GPU's) for the stages after this one
            from reasoning_sae.lm_eval import vllm_engine

            vllm_engine.shutdown()
    frame = results_frame(records)
    frame.to_csv(out / "results.csv", index=False)
    collect_attempts(ctx, grid_cells).to_parquet(out / ATTEMPTS, index=False)
    (out / "table.md").write_text(table1(frame))
    if cfg.benchmark.word_ban.enabled:
        (out / "wordban.md").write_text(table2(frame))
    log_wandb(cfg, frame, out)
    vectors = {"vectors": ctx.vector_norm} if any(c.vector for c in grid_cells) else {}  # Table 1's note
    return {"cells": len(grid_cells), "tasks": list(cfg.benchmark.tasks), **vectors}


def validate(cfg: DictConfig, grid_cells: list[Cell]) -> None:
    """Fail on bad settings before the first (long) cell runs."""
    from reasoning_sae.evaluate.benchmarks import check_source

    if not grid_cells:
        raise UserError("nothing to evaluate: benchmark.tasks is empty, or no features and steering.baseline=false")
    bc = cfg.benchmark
    if bc.engine not in ("hf", "vllm"):
        raise UserError(f"unknown benchmark.engine {bc.engine!r}: use hf or vllm")
    if bc.engine == "vllm":
        from reasoning_sae.lm_eval.vllm_engine import require_vllm

        require_vllm()
        if bc.get("max_model_len") is not None and int(bc.max_model_len) <= int(bc.max_gen_toks):
            raise UserError(f"benchmark.max_model_len={bc.max_model_len} leaves no room for the prompt: set it above "
                            f"max_gen_toks={bc.max_gen_toks} (prompt + generation), or null for the model's maximum")
    for task in dict.fromkeys(c.task for c in grid_cells):
        task_spec(cfg, task)
        check_source(task, cfg.benchmark.data_files.get(task) if cfg.benchmark.data_files else None)
    steered = sorted({f for c in grid_cells for f in c.features})
    if steered:
        from reasoning_sae.sae.config import SAEConfig
        from reasoning_sae.steering import MODES, POSITIONS, check_clamp, check_site

        for key, allowed in (("mode", MODES), ("positions", POSITIONS)):
            if cfg.steering[key] not in allowed:
                raise UserError(f"steering.{key}={cfg.steering[key]!r}: use one of {', '.join(allowed)}")
        check_site(cfg.steering.get("site", "resid_post"))
        sae_cfg = SAEConfig.from_sae_lens(json.loads((sae_path(cfg) / CFG).read_text()))
        if cfg.steering.mode == "clamp":
            check_clamp(sae_cfg.architecture)  # topk: refused from cfg.json, before the model loads
        d_sae = sae_cfg.d_sae
        check_feature_ids(steered, d_sae, "steering.features")
        f_max_for(cfg, tuple(steered))  # f_max.json reads and covers every steered feature
    for name in dict.fromkeys(c.vector for c in grid_cells if c.vector):
        check_vector(cfg, name)
    if bc.engine == "vllm":
        steer_layer(cfg, any(c.features or c.vector for c in grid_cells))  # the SAE's hook names a model layer


def check_vector(cfg: DictConfig, name: str) -> None:
    """A steering vector's cells can run: its reference features are in the SAE and have an f_max, and the vector was
    computed at the run's SAE's hook, with its width."""
    from reasoning_sae.sae.config import SAEConfig

    sae = SAEConfig.from_sae_lens(json.loads((sae_path(cfg) / CFG).read_text()))
    reference = reference_features(cfg)
    check_feature_ids(list(reference), sae.d_sae, "steering.features")
    f_max_for(cfg, reference)
    path, vector, metadata = vector_file(cfg, name)
    if metadata.get("hook") != sae.metadata.get("hook_name") or len(vector) != sae.d_in:
        raise UserError(f"{path} was computed at {metadata.get('hook')} ({len(vector)} dimensions) but the run's SAE "
                        f"reads {sae.metadata.get('hook_name')} ({sae.d_in}): rerun the score stage on this SAE")


def run(cfg: DictConfig) -> Path:
    grid_cells = cells(cfg)
    validate(cfg, grid_cells)
    found = inputs(cfg, grid_cells)
    # the per-attempt records in the fingerprint: an evaluate artifact written before them is rebuilt (from its cached
    # cells, in seconds) instead of skipped as up to date
    return run_stage(cfg, "evaluate", CONFIG_KEYS, {**found, "records": RECORDS},
                     lambda out: build(cfg, out, grid_cells, found))
