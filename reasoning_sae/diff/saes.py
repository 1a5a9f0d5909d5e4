"""`python -m reasoning_sae.diff.saes [--dry-run] [key=value ...]`: train every SAE the diff stage reads from disk
(diff.crosslayer.saes, diff.stagewise.saes) that is not there yet, with the package's own corpus and train stages.

The paper's model-diffing SAEs are whole SAE runs on other layers, models and data, far too big for the diff stage,
so this plans them from the experiment's diff config and runs one CLI command each (in order: a fine-tune after the
SAE it starts from), every one with the overrides given here (trainer=gpu, sizes, ...):

- the layers of diff.crosslayer.layers: one `train` on the experiment's own corpus per run directory their SAE
  paths share, which trains them all from one LM pass: the layer at `<run>/train/sae` is the run's model.layer
  (none there: the experiment's), each at `<run>/train/saes/<name>/sae` a `train.saes` entry {name, layer}; a
  run directory of one layer is the plain `train model.layer=L job_dir=<run>`;
- a trajectory T of diff.stagewise.trajectories (S, SD, SDF, ...): `train` with job_dir=<its SAE path less
  /train/sae> on the corpus of T's last stage X (`corpus` under experiment_name `<experiment>-diff-X`: X's model and
  its data.sources entry alone, fraction 1), at the main SAE's layer; T of one letter from scratch on sae.training_tokens, a longer one fine-tuned from its
  prefix's SAE (sae.init_from) for diff.train.finetune_fraction of them (the paper: 30%).

`--dry-run` prints the commands (to run them elsewhere, e.g. as SLURM jobs) and runs nothing."""

import shlex
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from omegaconf import DictConfig, OmegaConf

from reasoning_sae.errors import UserError


class Step(NamedTuple):
    what: str
    """What the command makes, for the log."""
    args: tuple[str, ...]
    """`python -m reasoning_sae` arguments."""


def compose_config(overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    from reasoning_sae.config_check import check_group_choices
    from reasoning_sae.models.config import conf_dir

    check_group_choices(overrides)
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="diff", overrides=overrides)


def has_sae(path: str | Path) -> bool:
    from reasoning_sae.sae.io import CFG

    return (Path(path) / CFG).is_file()


def job_dir(sae_path: str) -> Path:
    """The run directory whose train/sae is `sae_path`."""
    path = Path(sae_path)
    if path.parts[-2:] != ("train", "sae"):
        raise UserError(f"{sae_path} does not end in train/sae: point the diff config at <a run dir>/train/sae (or, "
                        f"for a layer, <a run dir>/train/saes/<name>/sae)")
    return path.parent.parent


def only_source(cfg: DictConfig, source: str) -> list[str]:
    """Overrides that make `source` the whole training mix (and hold out no text: only the falsify stage reads it)."""
    if source not in cfg.data.sources:
        raise UserError(f"a diff stage reads source {source!r}, which is not one of data.sources "
                        f"({sorted(cfg.data.sources)}): name a data.sources entry")
    return [*(f"data.sources.{name}.fraction={1.0 if name == source else 0.0}" for name in cfg.data.sources),
            "data.heldout.sequences=0"]


def run_of(sae_path: str) -> tuple[Path, str | None]:
    """The run directory of a layer SAE's path and its `train.saes` name (None: the run's main SAE)."""
    path = Path(sae_path)
    if len(path.parts) > 4 and path.parts[-4] == "train" and path.parts[-3] == "saes" and path.parts[-1] == "sae":
        return path.parents[3], path.parts[-2]
    return job_dir(sae_path), None


def layer_steps(cfg: DictConfig, overrides: list[str]) -> list[Step]:
    cl, runs = cfg.diff.crosslayer, {}
    for layer in cl.layers or []:
        path = (cl.saes or {}).get(layer) or (cl.saes or {}).get(str(layer))
        if path is None:
            continue
        run, name = run_of(path)
        runs.setdefault(run, []).append((int(layer), name, has_sae(path)))
    steps = []
    for run, saes in runs.items():
        if all(there for *_, there in saes):
            continue
        mains = [layer for layer, name, _ in saes if name is None]
        if len(mains) > 1:
            raise UserError(f"diff.crosslayer.saes puts layers {mains} all at {run}/train/sae: give each its own "
                            f"run directory, or all but one a {run}/train/saes/<name>/sae path")
        main = mains[0] if mains else int(cfg.model.layer)
        extra = [f"{{name:{name},layer:{layer}}}" for layer, name, _ in saes if name is not None]
        layers = [layer for layer, *_ in saes]
        what = f"layer {layers[0]} SAE" if len(layers) == 1 else f"layer {', '.join(map(str, layers))} SAEs, one pass"
        steps.append(Step(what, ("train", *overrides, f"model.layer={main}", f"job_dir={run}",
                                 *([f"train.saes=[{','.join(extra)}]"] if extra else []))))
    return steps


def trajectory_steps(cfg: DictConfig, overrides: list[str]) -> list[Step]:
    sw, steps, corpora = cfg.diff.stagewise, [], set()
    saes = sw.saes or {}
    base_tokens = int(cfg.sae.training_tokens)
    for trajectory in sorted(sw.trajectories or [], key=len):
        path = saes.get(trajectory)
        if path is None or has_sae(path):
            continue
        letter = trajectory[-1]
        stage = sw.stages[letter]
        # One corpus per stage letter (its model and data), shared by the trajectories ending in it (SDF, SMF).
        run = [f"experiment_name={cfg.experiment_name}-diff-{letter}", *only_source(cfg, stage.source)]
        if stage.model is not None:
            run.append(f"model={stage.model}")
        run.append(f"model.layer={cfg.model.layer}")  # the main SAE's layer, whatever the stage's model
        if letter not in corpora:
            corpora.add(letter)
            steps.append(Step(f"stage {letter} corpus", ("corpus", *overrides, *run)))
        train = ["train", *overrides, *run, f"job_dir={job_dir(path)}"]
        if len(trajectory) > 1:
            prefix = saes.get(trajectory[:-1])
            if prefix is None:
                raise UserError(f"trajectory {trajectory} fine-tunes {trajectory[:-1]}'s SAE, which "
                                f"diff.stagewise.saes does not name: add it")
            tokens = int(float(cfg.diff.train.finetune_fraction) * base_tokens)
            train += [f"sae.init_from={prefix}", f"sae.training_tokens={tokens}"]
        steps.append(Step(f"trajectory {trajectory} SAE", tuple(train)))
    return steps


def plan(overrides: list[str]) -> list[Step]:
    """Every command needed, in order; nothing when every SAE the diff config names is there."""
    cfg = compose_config(overrides)
    steps = layer_steps(cfg, overrides) + trajectory_steps(cfg, overrides)
    if any(s.what.startswith("layer") for s in steps):  # layer SAEs train on the experiment's own corpus
        steps.insert(0, Step("the experiment's corpus", ("corpus", *overrides)))
    return steps


def command(step: Step) -> list[str]:
    return [sys.executable, "-m", "reasoning_sae", *step.args]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    dry = "--dry-run" in argv
    overrides = [a for a in argv if a != "--dry-run"]
    try:
        steps = plan(overrides)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    if not steps:
        print("diff.saes: every SAE the diff config names is there")
    for i, step in enumerate(steps, 1):
        line = shlex.join(["python", "-m", "reasoning_sae", *step.args])
        print(f"[{i}/{len(steps)}] {step.what}: {line}", flush=True)
        if dry:
            continue
        done = subprocess.run(command(step))
        if done.returncode != 0:
            print(f"error: {step.what} failed (exit {done.returncode}): fix it and rerun; finished SAEs are kept",
                  file=sys.stderr)
            return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
