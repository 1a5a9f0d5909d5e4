"""What every stage shares: its output directory, atomic writes, provenance, and skipping when nothing changed.

A stage's output lives in `artifacts/<experiment>/<stage>/`. It is built in a temporary sibling directory and
swapped in only when complete, so an interrupted run never leaves a half-written artifact. Beside the outputs,
`config.yaml` holds the resolved config and `meta.json` the provenance: fingerprint (of the stage's config
keys, its inputs and the package version), git commit, lock-file hash, seeds and timings; `MANIFEST.sha256` the
sha256 of every file, checked by `make verify`.
"""

import contextlib
import functools
import hashlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from reasoning_sae import __version__
from reasoning_sae.manifest import MANIFEST, write_manifest
from reasoning_sae.publish import atomic_dir, clean_stale, stage_lock

log = logging.getLogger(__name__)
META = "meta.json"
TOP_FEATURES, SCORES, F_MAX, TRAIN_SAE = "top_features.json", "scores.parquet", "f_max.json", "sae"
DIFFMEAN = "diffmean.safetensors"  # the score stage's DiffMean steering vector (score/diffmean.py)
HUB_ENV = ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT", "REASONING_SAE_CACHE", "XDG_CACHE_HOME")
REPO_ROOT = Path(__file__).resolve().parents[1]


def experiment_dir(cfg: DictConfig) -> Path:
    """`artifacts/<experiment>/`: the stage artifacts of one experiment."""
    return Path(cfg.paths.artifacts) / cfg.experiment_name


def stage_dir(cfg: DictConfig, stage: str) -> Path:
    """Where a stage's artifact lives (and where later stages read it)."""
    return experiment_dir(cfg) / stage


def activation_cache(cfg: DictConfig):
    """The experiment's `activation-cache/` (models.activation_cache), or None when reuse_activations_gb is 0."""
    from reasoning_sae.models.activation_cache import ActivationCache

    limit = float(cfg.reuse_activations_gb) * 2**30
    return ActivationCache(experiment_dir(cfg) / "activation-cache", int(limit)) if limit > 0 else None


def has_artifact(stage_path: Path, name: str = "") -> bool:
    """The stage artifact at `stage_path` is finished (it has its meta.json) and holds `name`."""
    return (stage_path / META).is_file() and (stage_path / name).exists()


def _missing(stage: str, path: Path):
    from reasoning_sae.errors import UserError

    return UserError(f"no {stage} artifact at {path}: run the {stage} stage first (python -m reasoning_sae {stage})")


def upstream(cfg: DictConfig, stage: str, name: str = "") -> Path:
    """`name` inside an earlier stage's artifact; a UserError naming the stage to run when it is absent."""
    path = stage_dir(cfg, stage) / name
    clean_stale(stage_dir(cfg, stage))  # an artifact a killed two-rename publish stranded is put back first
    if not has_artifact(stage_dir(cfg, stage), name):
        raise _missing(stage, path)
    return path


def artifact(where: DictConfig | Path | str, stage: str, name: str = "") -> Path:
    """`name` inside a finished stage artifact, or a UserError naming the stage to run. `where`: a run's config
    (read as `upstream`, which first puts back an artifact an interrupted publish stranded) or an experiment's folder
    `artifacts/<experiment>/` (read only, as the figures and `verify` read it)."""
    if not isinstance(where, (str, os.PathLike)):
        return upstream(where, stage, name)
    path = Path(where) / stage / name
    if not has_artifact(Path(where) / stage, name):
        raise _missing(stage, path)
    return path


def upstream_inputs(cfg: DictConfig, files: dict[str, str]) -> dict[str, str]:
    """Fingerprints of the earlier stages a stage reads (`files`: stage -> the file or folder it needs)."""
    for stage, name in files.items():
        upstream(cfg, stage, name)
    return {stage: path_fingerprint(stage_dir(cfg, stage)) for stage in files}


def output_dir(cfg: DictConfig, stage: str) -> Path:
    """Where this run writes: the stage directory, or in a Hydra multirun the job's own directory."""
    job_dir = cfg.get("job_dir")
    return Path(job_dir) / stage if job_dir else stage_dir(cfg, stage)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def path_fingerprint(path: str | Path) -> str:
    """Upstream artifact: its recorded fingerprint; a file: its content hash; a directory: names, sizes, mtimes."""
    path = Path(path)
    if (path / META).is_file():
        return json.loads((path / META).read_text())["fingerprint"]
    if path.is_file():
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    if path.is_dir():
        entries = sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*"))
        return _sha256(json.dumps(entries).encode())
    return "absent"


def fingerprint(cfg: DictConfig, keys: Iterable[str], inputs: dict[str, str]) -> str:
    config = {k: OmegaConf.to_container(cfg[k], resolve=True) if isinstance(cfg[k], DictConfig) else cfg[k] for k in keys}
    blob = json.dumps({"config": config, "inputs": inputs, "version": __version__}, sort_keys=True, default=str)
    return _sha256(blob.encode())


def up_to_date(out_dir: Path, fp: str) -> bool:
    meta = out_dir / META
    return meta.is_file() and json.loads(meta.read_text()).get("fingerprint") == fp


def git_commit() -> str | None:
    """HEAD (with -dirty for uncommitted changes), or what the Docker image recorded at build time (no .git inside)."""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    return os.environ.get("REASONING_SAE_GIT_COMMIT")


def lock_hash() -> str | None:
    lock = REPO_ROOT / "requirements.lock"
    return _sha256(lock.read_bytes()) if lock.is_file() else None


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def run_stage(
    cfg: DictConfig,
    stage: str,
    keys: Iterable[str],
    inputs: dict[str, str],
    build: Callable[[Path], dict | None],
) -> Path:
    """Build `stage` into its artifact directory unless an identical build (same fingerprint) is there."""
    keys = tuple(keys)
    out = output_dir(cfg, stage)
    fp = fingerprint(cfg, keys, inputs)
    with stage_lock(out):  # a concurrent run of this stage finishes first; then this one finds it up to date
        if not cfg.get("force", False) and up_to_date(out, fp):
            log.info("%s: up to date (%s), skipped", stage, out)
            if not (out / MANIFEST).is_file():  # written by a version without manifests
                write_manifest(out)
            return out
        _build(cfg, stage, keys, inputs, fp, out, build)
    return out


def _build(cfg: DictConfig, stage: str, keys: tuple, inputs: dict[str, str], fp: str, out: Path,
           build: Callable[[Path], dict | None]) -> None:
    start = time.time()
    with atomic_dir(out) as tmp:
        summary = build(tmp) or {}
        (tmp / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        write_json(tmp / META, {
            "stage": stage,
            "fingerprint": fp,
            "config_keys": list(keys),
            "inputs": inputs,
            "package_version": __version__,
            "git_commit": git_commit(),
            "lock_sha256": lock_hash(),
            "seed": cfg.get("seed"),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.time() - start, 2),
            "summary": summary,
        })
        write_manifest(tmp)
    log.info("%s: wrote %s in %.1f s", stage, out, time.time() - start)


def sae_source(cfg: DictConfig):
    """The `sae_source` of a run, validated (a SAESource)."""
    from reasoning_sae.sae.source import SAESource

    return SAESource.from_mapping(OmegaConf.to_container(cfg.sae_source, resolve=True))


def run_sae(cfg: DictConfig):
    """The SAE every stage after `train` reads (a FetchedSAE: folder, fingerprint, provenance), checked against the
    model's width and layers before any model loads. Scores, f_max and dashboards belong to this SAE."""
    source = sae_source(cfg)
    train = None
    if source.kind == "train":
        upstream(cfg, "train", TRAIN_SAE)
        train = str(stage_dir(cfg, "train"))
    model = json.dumps(OmegaConf.to_container(cfg.model, resolve=True), sort_keys=True)
    env = json.dumps({k: os.environ.get(k) for k in HUB_ENV})  # where the HF and our caches are, and offline mode
    return _fetch(json.dumps(OmegaConf.to_container(cfg.sae_source, resolve=True), sort_keys=True), model, train,
                  path_fingerprint(train) if train else None, env)


@functools.lru_cache(maxsize=8)
def _fetch(source_json: str, model_json: str, train_dir: str | None, train_fingerprint: str | None, env: str):
    """One resolution per process and SAE (a hub SAE is looked up once, not once per evaluate cell)."""
    from reasoning_sae.models.config import model_config
    from reasoning_sae.models.gguf import cache_root
    from reasoning_sae.sae.source import FetchedSAE, SAESource, check_fits, fetch

    source = SAESource.from_mapping(json.loads(source_json))
    if train_dir:
        path = Path(train_dir) / TRAIN_SAE
        fetched = FetchedSAE(path, train_fingerprint, {"kind": "train", "path": str(path)})
    else:
        fetched = fetch(source, cache_root())
    check_fits(fetched.path, model_config(json.loads(model_json)), source.describe())
    return fetched


def sae_inputs(cfg: DictConfig) -> dict[str, str]:
    """The run SAE as an input of a stage: its fingerprint changes exactly when the SAE does."""
    return {"sae": run_sae(cfg).fingerprint}


def read_f_max(cfg: DictConfig, sae_fingerprint: str) -> dict[int, float]:
    """{feature id: f_max} of a finished interpret stage, for steering: only if it was measured on this SAE."""
    from reasoning_sae.errors import UserError

    path = stage_dir(cfg, "interpret")
    if not (path / "f_max.json").is_file():
        raise UserError(f"no f_max at {path / 'f_max.json'}: run the interpret stage first "
                        f"(python -m reasoning_sae interpret)")
    measured_on = json.loads((path / "sae.json").read_text()) if (path / "sae.json").is_file() else {}
    if measured_on.get("fingerprint") != sae_fingerprint:
        raise UserError(f"the interpret stage's f_max ({path}) was measured on another SAE than this run's "
                        f"sae_source: rerun it (python -m reasoning_sae interpret with the same overrides)")
    try:
        return {int(k): float(v) for k, v in json.loads((path / "f_max.json").read_text()).items()}
    except (ValueError, TypeError, AttributeError) as err:  # not JSON, or not {feature id: number}
        raise UserError(f"{path / 'f_max.json'} is corrupt ({type(err).__name__}: {err}): rerun the interpret stage "
                        f"(python -m reasoning_sae interpret force=true)") from None


# Readers of what the stages exchange, named after what they hold. `where` is a run's config or an experiment's
# folder `artifacts/<experiment>/` (see `artifact`); a missing artifact is a UserError naming the stage to run.

def read_top_features(where: DictConfig | Path | str) -> dict:
    """The score stage's `top_features.json`: F_R (`features`, best first), `q`, `top_k`, `tau`, `hook`, `vocabulary`
    and `sae`, the provenance and fingerprint of the SAE it was scored on."""
    return json.loads(artifact(where, "score", TOP_FEATURES).read_text())


def read_f_r(where: DictConfig | Path | str) -> list[int]:
    """F_R, the score stage's reasoning features, best first."""
    return [int(f) for f in read_top_features(where)["features"]]


def read_scores(where: DictConfig | Path | str):
    """The score stage's `scores.parquet`: ReasonScore, its parts, per-word means and rank, one row per feature."""
    import pandas as pd

    return pd.read_parquet(artifact(where, "score", SCORES))


def read_diffmean(where: DictConfig | Path | str):
    """The score stage's DiffMean vector as (path, vector [d_model] float32 numpy, metadata: hook, tokens_pos,
    tokens_neg); a score artifact written before DiffMean existed is a UserError naming the rebuild."""
    from safetensors import safe_open

    from reasoning_sae.errors import UserError

    path = artifact(where, "score")
    if not (path / DIFFMEAN).is_file():
        raise UserError(f"the score stage at {path} has no {DIFFMEAN} (written before DiffMean existed): rerun it "
                        f"(python -m reasoning_sae score force=true)")
    with safe_open(str(path / DIFFMEAN), framework="np") as f:
        return path / DIFFMEAN, f.get_tensor("diffmean"), f.metadata()


def read_corpus(where: DictConfig | Path | str, split: str):
    """The corpus stage's `train` or `score` split: an HF dataset of `input_ids` rows of `context_size` tokens
    (`train` also has `source`)."""
    import datasets

    return datasets.load_from_disk(str(artifact(where, "corpus", split)))


def corpus_tokens(corpus, sequences: int | None = None):
    """The `input_ids` of a corpus split as an int64 array [sequences, context_size], the first `sequences` rows
    when given."""
    import numpy as np

    return np.asarray(corpus["input_ids"], dtype=np.int64)[: sequences or None]


def read_tokens(where: DictConfig | Path | str, split: str, sequences: int | None = None):
    """The token ids of the corpus stage's `split` (int64 [sequences, context_size]), the first `sequences` rows when
    given."""
    return corpus_tokens(read_corpus(where, split), sequences)


def read_heldout(where: DictConfig | Path | str):
    """The corpus stage's held-out non-reasoning sequences (`heldout/`, int64 [sequences, context_size]): an empty
    [0, 0] array when it wrote none (data.heldout.sequences 0, or no rows left past the training mix)."""
    import numpy as np

    path = artifact(where, "corpus") / "heldout"
    return read_tokens(where, "heldout") if path.is_dir() else np.zeros((0, 0), dtype=np.int64)


def read_contexts(where: DictConfig | Path | str) -> dict[int, list[dict]]:
    """The interpret stage's `contexts.json`: {feature id: its top contexts, best first}, each with `sequence` and
    `position` in the scoring corpus, `activation`, `token` and the tokens and activations around it."""
    return {int(k): v for k, v in json.loads(artifact(where, "interpret", "contexts.json").read_text()).items()}


def sae_dir(where: DictConfig | Path | str) -> Path:
    """Where the train stage's SAE is (SAELens format); whether a run reads it is `sae_source`'s say (`run_sae`)."""
    root = Path(where) if isinstance(where, (str, os.PathLike)) else experiment_dir(where)
    return root / "train" / TRAIN_SAE
