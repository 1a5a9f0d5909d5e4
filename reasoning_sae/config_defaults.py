"""The typed settings dataclasses as the defaults of their Hydra config groups, so that each default is written once.

`conf/config.yaml` composes `dataclass/ModelConfig` under `model` and `dataclass/TrainConfig` under `sae` before the
group's chosen option: every key of those groups exists (for overrides and `--cfg job`) with its dataclass default,
and conf/model/*.yaml and conf/sae/*.yaml hold only what they change. `register()` puts the nodes in Hydra's
ConfigStore; `models.config.conf_dir()`, through which every composition of conf/ finds the tree, calls it.

The nodes are plain mappings of the defaults, not OmegaConf structured configs: a structured schema would type-check
values while Hydra composes, with OmegaConf's rules and messages (it reads `yes` as true, refuses 3.0 for a whole
number and names no fix), before the settings' own one-line checks (settings.py) could run."""

import functools
import importlib
from dataclasses import MISSING, fields

GROUP = "dataclass"
TYPED_GROUPS = {"model": ("reasoning_sae.models.config", "ModelConfig"),
                "sae": ("reasoning_sae.train.config", "TrainConfig")}
"""Config group -> the dataclass (module, name) that reads it and holds its defaults."""


def typed_group(group: str) -> type:
    module, name = TYPED_GROUPS[group]
    return getattr(importlib.import_module(module), name)


def group_defaults(group: str) -> dict:
    """The defaults of a typed group's dataclass, as its config node (`???`, OmegaConf's missing value, for a field
    without one: an option must set it)."""
    return {f.name: f.default if f.default is not MISSING else
            f.default_factory() if f.default_factory is not MISSING else "???" for f in fields(typed_group(group))}


@functools.cache
def register() -> None:
    """ConfigStore entries `dataclass/<class name>`, one per typed group (once per process)."""
    from hydra.core.config_store import ConfigStore

    for group in TYPED_GROUPS:
        ConfigStore.instance().store(group=GROUP, name=TYPED_GROUPS[group][1], node=group_defaults(group))
