"""`python -m reasoning_sae <stage> [hydra overrides]`: one Hydra app per stage over conf/, plus `reproduce`."""

import errno
import importlib
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from reasoning_sae import preflight
from reasoning_sae.config_check import check_group_choices
from reasoning_sae.errors import UserError
from reasoning_sae.models.config import conf_dir
from reasoning_sae.stages import OPTIONAL, STAGES

log = logging.getLogger("reasoning_sae")
STAGE_NAMES = (*STAGES, *OPTIONAL, "reproduce")
# A DDP run's other ranks are this command started again by Lightning (LOCAL_RANK=1, ...) with the sys.argv that
# main() gives Hydra plus its hydra.run.dir overrides. The job they belong to travels in these variables: its stage,
# its concrete overrides (one job of a multirun, not the sweep) and, in a multirun, its directory.
STAGE_ENV, OVERRIDES_ENV, JOB_DIR_ENV = "REASONING_SAE_STAGE", "REASONING_SAE_JOB_OVERRIDES", "REASONING_SAE_JOB_DIR"
LIGHTNING_ARGS = ("hydra.run.dir=", "hydra.job.name=", "hydra.output_subdir=")
USAGE = f"""usage: python -m reasoning_sae <stage> [key=value ...] [-m for a Hydra multirun]

stages: {', '.join(STAGES)}, reproduce (all of them in order)
optional: {', '.join(OPTIONAL)} (needs an LLM endpoint; reproduce runs it, before figures, when one is given)
examples:
  python -m reasoning_sae corpus
  python -m reasoning_sae corpus data.context_size=128 force=true
  python -m reasoning_sae reproduce experiment=paper
  python -m reasoning_sae corpus --cfg job        # print the composed config
publish a train run's SAEs as a folder for the hub (SAELens' layout and a model card; nothing is uploaded):
  python -m reasoning_sae publish <run> [--out DIR] [--repo-id ORG/NAME] [--force]   # --help for more"""


def run_named_stage(stage: str, cfg):
    """Import the stage module `stage` and run it on `cfg`."""
    return importlib.import_module(f"reasoning_sae.stages.{stage}").run(cfg)


def skipped(cfg) -> dict[str, str]:
    """Stages reproduce leaves out, with the reason."""
    unknown = sorted(set(cfg.skip_stages) - set(STAGES) - set(OPTIONAL))
    if unknown:
        raise UserError(f"skip_stages names {unknown}, which are not stages: use some of "
                        f"{', '.join((*STAGES, *OPTIONAL))}")
    reasons = {stage: "skip_stages" for stage in cfg.skip_stages}
    if cfg.sae_source.kind != "train":
        reasons["train"] = f"sae_source={cfg.sae_source.kind}: no SAE of this run is trained"
    return reasons


def planned(cfg) -> list[str]:
    """The stages reproduce runs, in order: STAGES, with autointerp before figures when an explainer endpoint is
    given (autointerp.explainer.base_url or $OPENAI_BASE_URL, as the stage itself reads it)."""
    from reasoning_sae.interpret.explainer import endpoint

    stages = list(STAGES)
    if endpoint(cfg.autointerp.explainer)[0]:
        stages.insert(stages.index("figures"), "autointerp")
    return stages


def reproduce(cfg) -> None:
    timings, leave_out = [], skipped(cfg)
    for stage in planned(cfg):
        if stage in leave_out:
            log.info("reproduce: %s left out (%s)", stage, leave_out[stage])
            continue
        start = time.time()
        os.environ[STAGE_ENV] = stage  # the other DDP ranks of the train stage run that stage alone
        run_named_stage(stage, cfg)
        timings.append((stage, time.time() - start))
    print("\nstage           seconds")
    for stage, seconds in timings:
        print(f"{stage:<15} {seconds:8.1f}")
    print(f"{'total':<15} {sum(s for _, s in timings):8.1f}")
    verdict = reproduction_verdict(cfg)
    if verdict:
        print(f"\n{verdict}")


def reproduction_verdict(cfg) -> str | None:
    """Whether this run reproduced the committed one (paper/expected/<experiment>/), when there is one."""
    from reasoning_sae.figures import expectations
    from reasoning_sae.figures.common import Artifacts
    from reasoning_sae.figures.verify import Result

    expected = expectations.load(cfg.experiment_name)
    if not expected or cfg.get("job_dir"):
        return None
    res = Result()
    account = expectations.check(res, Artifacts(Path(cfg.paths.artifacts) / cfg.experiment_name), expected)
    return expectations.summary(res) if res.checks else account


def _discard_run_dir(artifacts_root: Path) -> None:
    """Remove this run's Hydra log directory, so a run stopped by bad input leaves nothing behind."""
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in run_dir.parents:  # and the log folders it was the only entry of
        if parent.resolve() == artifacts_root.resolve() or not parent.is_dir() or any(parent.iterdir()):
            break
        parent.rmdir()


def _task(stage: str):
    def task(cfg) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        from omegaconf import open_dict

        hydra_cfg = HydraConfig.get()
        job_dir = hydra_cfg.runtime.output_dir if hydra_cfg.mode == RunMode.MULTIRUN else None
        if is_other_rank():
            job_dir = os.environ.get(JOB_DIR_ENV) or None
        else:
            os.environ.update({STAGE_ENV: stage, OVERRIDES_ENV: json.dumps(list(hydra_cfg.overrides.task)),
                               JOB_DIR_ENV: job_dir or ""})
        if job_dir:
            with open_dict(cfg):
                cfg.job_dir = job_dir
        try:
            try:
                reproduce(cfg) if stage == "reproduce" else run_named_stage(stage, cfg)
            except OSError as err:
                raise environment_error(err) or err
        except UserError as err:
            if not is_other_rank():  # the run directory is rank 0's
                _discard_run_dir(Path(cfg.paths.artifacts))
            print(f"error: {err}", file=sys.stderr)
            sys.exit(err.exit_code)

    return task


def environment_error(err: OSError) -> UserError | None:
    """A full disk, a quota or a folder turned read-only mid-run is the machine's fault, not ours: one line."""
    fixes = {errno.ENOSPC: "free disk space", errno.EDQUOT: "free space within your quota",
             errno.EROFS: "set paths.artifacts to a writable folder", errno.EACCES: "fix the permissions",
             errno.EPERM: "fix the permissions"}
    if err.errno not in fixes:
        return None
    where = f" ({err.filename})" if err.filename else ""
    return UserError(f"{err.strerror}{where}: {fixes[err.errno]}, then rerun: finished stages are kept")


def is_other_rank() -> bool:
    """This process is a DDP rank other than 0, started by Lightning for a job of this CLI."""
    return os.environ.get("LOCAL_RANK", "0") != "0" and STAGE_ENV in os.environ


def other_rank_command(argv: list[str]) -> tuple[str, list[str]]:
    """The stage and overrides of the job this rank belongs to (Lightning's own hydra.* arguments kept)."""
    lightning = [a for a in argv if a.startswith(LIGHTNING_ARGS)]
    return os.environ[STAGE_ENV], [*json.loads(os.environ.get(OVERRIDES_ENV, "[]")), *lightning]


def check_slurm(overrides: list[str]) -> None:
    """A SLURM launcher needs a cluster that answers: say so in one line before Hydra composes anything."""
    import shutil
    import subprocess

    if not any(o in ("hydra/launcher=slurm", "hydra/launcher=submitit_slurm") for o in overrides):
        return
    fix = "start SLURM (or run on a login node), or use hydra/launcher=submitit_local"
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        raise UserError(f"hydra/launcher=slurm needs SLURM's sbatch and sinfo, which are not installed here: {fix}")
    try:
        answer = subprocess.run(["sinfo", "--noheader", "--format=%a"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise UserError(f"hydra/launcher=slurm: sinfo got no answer from slurmctld in 30 s: {fix}") from None
    if answer.returncode != 0:
        reason = (answer.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise UserError(f"hydra/launcher=slurm: SLURM is unreachable ({reason}): {fix}")


def publish(argv: list[str]) -> int:
    """`publish <run> ...` (reasoning_sae/hub_release.py): argparse, not a Hydra app: it runs no stage."""
    from reasoning_sae import hub_release

    try:
        try:
            return hub_release.command(argv)
        except OSError as err:
            raise environment_error(err) or err
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except SystemExit as done:  # --help
        return int(done.code or 0)


def main(argv: list[str] | None = None) -> int:
    from unittest import mock

    import hydra

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    stage, overrides = other_rank_command(argv) if is_other_rank() else (argv[0], argv[1:])
    if stage == "publish":
        return publish(overrides)
    if stage not in STAGE_NAMES:
        print(f"error: unknown stage {stage!r}: use one of {', '.join((*STAGES, *OPTIONAL))}, reproduce "
              f"(or the command publish)", file=sys.stderr)
        return 2
    try:
        check_group_choices(overrides)
        check_slurm(overrides)
        if not is_other_rank():  # rank 0 checked this job before starting the others
            preflight.run(stage, overrides)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    app = hydra.main(config_path=str(conf_dir()), config_name=stage, version_base="1.3")(_task(stage))
    # hydra.main takes no argument list: it parses sys.argv (the program name shows in its usage lines), so
    # sys.argv holds this stage's command only while the app runs
    with mock.patch.object(sys, "argv", [f"reasoning_sae {stage}", *overrides]):
        app()
    return 0
