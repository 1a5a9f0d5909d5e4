"""`python -m reasoning_sae publish <run>`: a train stage's SAEs as a folder ready for `hf upload` (nothing uploaded).

The folder has the layout SAELens' uploader gives a repository (sae_lens/training/upload_saes_to_huggingface.py): one
folder per SAE id holding `cfg.json`, `sae_weights.safetensors` and `sparsity.safetensors`, so that
`SAE.from_pretrained(repo_id, sae_id)` finds them, and at the top a model card `README.md` with `library_name: saelens`
(release_card in train/card.py). Each SAE folder also keeps the train stage's own card of that SAE, and `publish.json`
records what was published, which marks the folder as a publish: a later publish replaces it, while any other existing
folder is replaced only with --force. The SAE id is the SAE's hook name (SAELens' convention), or, where several SAEs
of the run read the same hook, the name of its `saes/<name>/` folder (the main SAE keeps the hook name)."""

import argparse
import json
import logging
import shutil
import time
from pathlib import Path
from typing import NamedTuple

from reasoning_sae import __version__
from reasoning_sae.errors import UserError

log = logging.getLogger(__name__)
PUBLISHED, METRICS, SAE, MULTI = "publish.json", "metrics.json", "sae", "saes"
PLACEHOLDER_ORG = "your-hf-name"
USAGE = "python -m reasoning_sae publish <run> [--out DIR] [--repo-id ORG/NAME] [--force] [paths.artifacts=DIR]"


class RunSAE(NamedTuple):
    """One SAE of a train run."""

    name: str
    """`sae` for the run's main SAE, else its folder under saes/."""
    folder: Path
    """The SAELens-format folder."""
    metrics: dict
    """Its held-out quality (the train stage's metrics.json)."""


class Release(NamedTuple):
    """What `publish` wrote."""

    out: Path
    sae_ids: list[str]
    repo_id: str


def resolve_run(run: str, artifacts: Path) -> Path:
    """The train stage folder `run` names: an experiment's (`artifacts/<run>/train`) or a folder given as a path (a
    train folder, or an experiment folder holding train/)."""
    path = Path(run).expanduser()
    as_path = "/" in run or run.startswith(".") or (path.is_dir() and any(
        (path / name).exists() for name in (SAE, MULTI, "train", "meta.json")))
    if not as_path:
        train = artifacts / run / "train"
        if not train.is_dir():
            raise UserError(f"no train artifact at {train}: run the train stage first (python -m reasoning_sae train "
                            f"experiment_name={run}), or give the train stage's folder as a path")
        return train
    if not path.is_dir():
        raise UserError(f"{run} is not a folder: give a train stage's folder (artifacts/<experiment>/train) or an "
                        f"experiment name")
    if not (path / SAE).exists() and not (path / MULTI).exists() and (path / "train").is_dir():
        return path / "train"  # an experiment's folder
    return path


def _read_metrics(path: Path) -> dict:
    try:
        metrics = json.loads(path.read_text())
        if not isinstance(metrics, dict):
            raise ValueError(f"a JSON object was expected, not {type(metrics).__name__}")
        return metrics
    except (OSError, ValueError) as err:
        raise UserError(f"{path} cannot be read ({err}): rerun the train stage (python -m reasoning_sae train "
                        f"force=true)") from None


def _metrics_of(train: Path, name: str) -> dict:
    """A multi-SAE run's SAE `name`: its own saes/<name>/metrics.json, or its entry in the run's metrics.json."""
    own = train / MULTI / name / METRICS
    if own.is_file():
        return _read_metrics(own)
    shared = _read_metrics(train / METRICS) if (train / METRICS).is_file() else {}
    if isinstance(shared.get(name), dict):
        return shared[name]
    raise UserError(f"the SAE {train / MULTI / name / SAE} has no metrics ({own} is missing): rerun the train stage "
                    f"(python -m reasoning_sae train force=true), which measures every SAE it writes")


def run_saes(train: Path) -> list[RunSAE]:
    """Every SAE of the train stage at `train`: `sae/`, then `saes/<name>/sae/` by name, each with its metrics. A run
    without an SAE, or an SAE without metrics, is a UserError: a card without the quality numbers would mislead."""
    saes = []
    if (train / SAE / "cfg.json").is_file():
        if not (train / METRICS).is_file():
            raise UserError(f"{train} has no {METRICS} (the train stage writes the SAE's L0, explained variance, CE "
                            f"and KL recovered there): rerun the train stage (python -m reasoning_sae train "
                            f"force=true)")
        saes.append(RunSAE(SAE, train / SAE, _read_metrics(train / METRICS)))
    if (train / MULTI).is_dir():
        for folder in sorted(p for p in (train / MULTI).iterdir() if (p / SAE / "cfg.json").is_file()):
            saes.append(RunSAE(folder.name, folder / SAE, _metrics_of(train, folder.name)))
    if not saes:
        raise UserError(f"{train} holds no SAE (no sae/cfg.json, no saes/<name>/sae/cfg.json): give a train stage's "
                        f"folder (artifacts/<experiment>/train), or run the train stage first")
    return saes


def sae_ids(hooks: list[str | None], names: list[str]) -> list[str]:
    """Each SAE's id: its hook name where no other SAE of the run reads that hook; else its saes/ folder's name (the
    main SAE, `sae`, keeps the hook name)."""
    ids = [hook if hook and (hooks.count(hook) == 1 or name == SAE) else name for hook, name in zip(hooks, names)]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise UserError(f"several SAEs of the run would publish as {twice}: rename their saes/<name>/ folders")
    return ids


def _is_publish(path: Path) -> bool:
    return (path / PUBLISHED).is_file()


def check_out(out: Path, train: Path, force: bool) -> None:
    """The output folder may be new or a previous publish; anything else only with force, and never the run itself or
    a folder holding it."""
    resolved, run = out.resolve(), train.resolve()
    if resolved == run or run.is_relative_to(resolved) or resolved.is_relative_to(run):
        raise UserError(f"--out {out} would overwrite the train run at {train}: choose a folder outside it")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: choose a folder")
    if out.exists() and any(out.iterdir()) and not _is_publish(out) and not force:
        raise UserError(f"--out {out} exists and is not a previous publish (no {PUBLISHED}): choose another folder, "
                        f"or pass --force to replace it")


def check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        reason = " ".join(str(err).split())[:160]
        raise UserError(f"--repo-id {repo_id!r} is not a hub repo id ({reason}): give one as org/name") from None
    if "/" not in repo_id:
        raise UserError(f"--repo-id {repo_id!r} has no owner: give it as org/name (your user or organisation)")


def _train_config(train: Path) -> dict:
    """The train stage's resolved config.yaml, or {} for a folder without one."""
    import yaml

    try:
        return yaml.safe_load((train / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _sources(config: dict) -> list[str]:
    sources = ((config.get("data") or {}).get("sources") or {}).values()
    return [str(s["path"]) for s in sources if isinstance(s, dict) and s.get("path") and s.get("fraction", 1) > 0]


def _copy_sae(sae: RunSAE, dest: Path) -> list[str]:
    """The SAELens files of `sae` (and the train stage's card of it) into `dest`; what was left out, and why."""
    from safetensors import safe_open

    from reasoning_sae.sae.io import CFG, SPARSITY, WEIGHTS

    dest.mkdir(parents=True)
    notes = []
    for name in (CFG, WEIGHTS, "README.md"):
        if (sae.folder / name).is_file():
            shutil.copyfile(sae.folder / name, dest / name)
    if (sae.folder / SPARSITY).is_file():
        with safe_open(str(sae.folder / SPARSITY), framework="np") as f:
            has_sparsity = "sparsity" in f.keys()
        if has_sparsity:
            shutil.copyfile(sae.folder / SPARSITY, dest / SPARSITY)
        else:  # SAELens' hub loader reads the `sparsity` tensor of that file whenever the file is there
            notes.append(f"{sae.folder / SPARSITY} has no `sparsity` tensor, which SAE.from_pretrained requires: "
                         f"left out")
    return notes


def publish(train: Path, out: Path, repo_id: str | None = None, force: bool = False) -> Release:
    """Write the SAEs of the train stage at `train` into `out` (atomically), ready for `hf upload <repo_id> <out>`.
    Every check runs before anything is written; each SAE is read back with our loader first."""
    from reasoning_sae.artifacts import git_commit, lock_hash
    from reasoning_sae.publish import atomic_dir
    from reasoning_sae.sae.config import SAEConfig
    from reasoning_sae.sae.io import CFG, load_sae
    from reasoning_sae.train.card import release_card

    config = _train_config(train)
    experiment = str(config.get("experiment_name") or train.parent.name)
    repo_id = repo_id or f"{PLACEHOLDER_ORG}/reasoning-sae-{experiment}"
    check_repo_id(repo_id)
    saes = run_saes(train)
    check_out(out, train, force)
    cfgs = []
    for sae in saes:
        load_sae(sae.folder)  # a damaged SAE is a one-line error here, not a broken release
        cfgs.append(json.loads((sae.folder / CFG).read_text()))
    ids = sae_ids([SAEConfig.from_sae_lens(c).metadata.get("hook_name") for c in cfgs], [s.name for s in saes])
    meta = json.loads((train / "meta.json").read_text()) if (train / "meta.json").is_file() else {}
    provenance = {"trained_commit": meta.get("git_commit"), "trained_lock": meta.get("lock_sha256"),
                  "fingerprint": meta.get("fingerprint"), "commit": git_commit(), "lock": lock_hash()}
    card = release_card([{"sae_id": i, "cfg": c, "metrics": s.metrics, "card": (s.folder / "README.md").is_file()}
                         for i, c, s in zip(ids, cfgs, saes)],
                        repo_id=repo_id, experiment=experiment, data=_sources(config), provenance=provenance)
    with atomic_dir(out) as tmp:
        notes = [note for sae, sae_id in zip(saes, ids) for note in _copy_sae(sae, tmp / sae_id)]
        (tmp / "README.md").write_text(card)
        (tmp / PUBLISHED).write_text(json.dumps({
            "repo_id": repo_id, "sae_ids": dict(zip(ids, (s.name for s in saes))), "experiment": experiment,
            "notes": notes, "package_version": __version__, **provenance,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=2) + "\n")
    for note in notes:
        log.warning(note)
    return Release(out, ids, repo_id)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(f"publish: {message}: see python -m reasoning_sae publish --help")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m reasoning_sae publish", usage=USAGE,
                description="Write a train run's SAEs as a folder ready for `hf upload` (SAELens' layout and a "
                            "model card); nothing is uploaded.")
    p.add_argument("run", help="an experiment name (artifacts/<run>/train) or a train stage's folder (a path)")
    p.add_argument("--out", type=Path, help="the folder to write (default: publish/ beside the train folder)")
    p.add_argument("--repo-id", help=f"the hub repo the card's snippets load from (default: "
                                     f"{PLACEHOLDER_ORG}/reasoning-sae-<experiment>)")
    p.add_argument("--force", action="store_true", help="replace an existing --out that is not a previous publish")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides that locate the artifacts, e.g. paths.artifacts=/data/artifacts")
    return p


def command(argv: list[str]) -> int:
    """`python -m reasoning_sae publish ...`: one line `error: ...` and exit 2 on bad input, nothing written."""
    from reasoning_sae import preflight

    if not argv:
        raise UserError("publish needs a run: an experiment name or a train stage's folder (python -m reasoning_sae "
                        "publish demo)")
    args = parser().parse_intermixed_args(argv)  # overrides may come before or after the options
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise UserError(f"publish takes one run, then key=value overrides, not {bad}: see python -m reasoning_sae "
                        f"publish --help")
    artifacts = Path(preflight.compose("train", args.overrides).paths.artifacts).expanduser()
    train = resolve_run(args.run, artifacts)
    release = publish(train, args.out or train.parent / "publish", args.repo_id, args.force)
    print(f"wrote {release.out}: {len(release.sae_ids)} SAE(s), {', '.join(release.sae_ids)}\n"
          f"upload it with: hf upload {release.repo_id} {release.out}")
    return 0
