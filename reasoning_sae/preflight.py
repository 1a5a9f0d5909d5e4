"""What the CLI checks before Hydra starts a run: the overrides compose, every setting has its type, and the
artifacts folder can be written. Each failure is one UserError line; nothing is written, not even Hydra's log dir."""

import os
import tempfile
from pathlib import Path

from reasoning_sae.errors import UserError

# argv options of a Hydra app that take a value (the value is not an override)
_VALUE_OPTIONS = ("--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                  "--config-dir", "-cd", "--info", "--experimental-rerun")


def _one_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return "; ".join(line for line in lines if not line.startswith(("full_key:", "object_type=", "reference_type=")))


def split_argv(argv: list[str]) -> tuple[list[str], bool]:
    """(the key=value overrides, whether the run only prints: --cfg, --help, --info, --resolve)."""
    overrides, printing, skip = [], False, False
    for arg in argv:
        if skip:
            skip = False
        elif arg.startswith("-"):
            printing |= arg in ("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "--resolve")
            skip = arg in _VALUE_OPTIONS and arg != "--info"
        else:
            overrides.append(arg)
    return overrides, printing


def one_job(overrides: list[str]) -> list[str]:
    """The first job of a sweep (`a=1,2` -> `a=1`), and no hydra.* settings: what compose() can take."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    job = []
    for override in parsed:
        if override.key_or_group.startswith("hydra"):
            continue
        if override.is_sweep_override():
            first = next(iter(override.sweep_string_iterator()), None)
            if first is None:
                continue
            job.append(f"{override.get_key_element()}={first}")
        else:
            job.append(override.input_line)
    return job


def compose(stage: str, overrides: list[str]):
    """The config a run of `stage` would get (the first job of a sweep), or a one-line UserError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from reasoning_sae.models.config import conf_dir

    try:
        job = one_job(overrides)
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return hydra_compose(config_name=stage, overrides=job)
    except (HydraException, OmegaConfBaseException) as err:
        message = _one_line(err)
        if "not in struct" in message or "Could not override" in message:
            key = message.split("'")[1] if "'" in message else "the key"
            raise UserError(f"no setting {key} exists: check its spelling (python -m reasoning_sae {stage} --cfg job "
                            f"lists the settings), or add a new key with +{key}=...") from None
        raise UserError(f"the overrides do not compose: {message}: use key=value with keys from --cfg job") from None


def check_writable(folder: Path, key: str) -> None:
    """`folder` exists as a writable folder, or can be created: probed by making (and removing) a temporary folder in
    its nearest existing ancestor, which also catches read-only mounts and root's way past permissions."""
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise UserError(f"{key}={folder}: {existing} is a file, not a folder: set {key} to a folder you can write")
    try:
        Path(tempfile.mkdtemp(dir=existing, prefix=".reasoning-sae-probe-")).rmdir()
    except OSError as err:
        raise UserError(f"{key}={folder} cannot be written ({os.strerror(err.errno) if err.errno else err} in "
                        f"{existing}): set {key} to a folder you can write") from None


def run(stage: str, argv: list[str]) -> None:
    """Every check of a run before Hydra starts it."""
    from omegaconf.errors import OmegaConfBaseException

    from reasoning_sae import config_check

    overrides, printing = split_argv(argv)
    cfg = compose(stage, overrides)
    if printing:
        return
    try:
        config_check.check(cfg)
        if stage in ("train", "diff", "reproduce"):  # the stages that train SAEs (TrainConfig imports torch)
            from omegaconf import OmegaConf

            from reasoning_sae.train.config import TrainConfig

            TrainConfig.from_mapping(OmegaConf.to_container(cfg.sae, resolve=True))
    except OmegaConfBaseException as err:  # an interpolation that does not resolve
        raise UserError(f"the config does not resolve: {_one_line(err)}: fix the override or conf/ file") from None
    check_writable(Path(cfg.paths.artifacts).expanduser(), "paths.artifacts")
