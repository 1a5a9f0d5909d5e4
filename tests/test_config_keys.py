"""Every setting under conf/ has a reader, and the settings of a typed group have one default.

Read: each key of every composed config (every option of every group) is consumed by some code of the package,
found statically in its source: an attribute access (`cfg.data.context_size`), a string (`bc.get("grading")`, a
dotted key such as "benchmark.word_ban.scope"), or a field of a typed config class a group is read into
(TrainConfig, SourceConfig, VerifierConfig, ...). Allowed by rule, not by name: the keys beside a `_target_` that
its target takes (Hydra instantiates it: loggers, callbacks), the trainer group's keys that Lightning's Trainer
takes, and the keys of a mapping the code iterates (`data.sources.items()`: names a user gives, not settings;
what lies inside them is checked). `hydra.*`, the launchers included, is checked by Hydra's own schemas when it
composes, so it is not composed here.

One default: the `model` and `sae` groups start from ModelConfig's and TrainConfig's defaults
(reasoning_sae/config_defaults.py). A YAML option that restates a default is a second copy that silently disagrees
once the dataclass changes, so none may; and each composed group is exactly its dataclass's defaults with the
option's own values on top."""

import ast
import inspect
import re
import shutil
from dataclasses import asdict
from functools import cache
from pathlib import Path

import pytest
from hydra.utils import get_method
from omegaconf import OmegaConf, open_dict

import reasoning_sae
from reasoning_sae.config_defaults import TYPED_GROUPS, group_defaults, typed_group
from reasoning_sae.models.config import conf_dir, model_config
from tests.test_configs import GROUP_OPTIONS, REQUIRED, options

PACKAGE = Path(reasoning_sae.__file__).parent
DOTTED = re.compile(r"^[A-Za-z_]\w*(\.\w+)+$")
ANY = None  # a target that takes **kwargs takes any key
RULED_GROUPS = {"trainer": "lightning.pytorch.Trainer"}  # a group passed whole as a callable's keyword arguments


def _iterated_name(node: ast.AST) -> str | None:
    """`x` of `<...>.x.items()` / `.values()` / `.keys()` or of `for _ in <...>.x` (a mapping read by iterating)."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("items", "values", "keys") and isinstance(node.func.value, ast.Attribute)):
        return node.func.value.attr
    if isinstance(node, (ast.For, ast.comprehension)) and isinstance(node.iter, ast.Attribute):
        return node.iter.attr
    return None


@cache
def source_readers() -> tuple[frozenset[str], frozenset[str]]:
    """(every name the package's source reads, the names of the mappings it iterates)."""
    names, iterated = set(), set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.update({node.value, *(node.value.split(".") if DOTTED.match(node.value) else ())})
            elif isinstance(node, ast.ClassDef):
                names.update(item.target.id for item in node.body
                             if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name))
            if (name := _iterated_name(node)) is not None:
                iterated.add(name)
    return frozenset(names), frozenset(iterated)


@cache
def parameters(target: str) -> frozenset[str] | None:
    """The keyword arguments `target` (a class or function path) takes; ANY when it takes **kwargs."""
    params = inspect.signature(get_method(target)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return ANY
    return frozenset(p.name for p in params)


def unread_keys(node, path: str = "", names_given: bool = False) -> list[str]:
    """The dotted paths of the keys under `node` (a plain container) that no code reads."""
    names, iterated = source_readers()
    if isinstance(node, list):
        return [k for i, item in enumerate(node) for k in unread_keys(item, f"{path}[{i}]")]
    if not isinstance(node, dict):
        return []
    target = node.get("_target_") or RULED_GROUPS.get(path)
    taken = parameters(target) if target else frozenset()
    unread = []
    for key, value in node.items():
        where = f"{path}.{key}" if path else str(key)
        read = names_given or key == "_target_" or taken is ANY or key in taken or str(key) in names
        unread += ([] if read else [where]) + unread_keys(value, where, names_given=str(key) in iterated)
    return unread


def _composed(compose, group: str, option: str, *more: str) -> dict:
    cfg = compose("corpus", (f"{group}={option}", *REQUIRED.get((group, option), ()), *more))
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_key_of_every_option_is_read_by_the_package(compose, group, option):
    assert unread_keys(_composed(compose, group, option)) == []


@pytest.mark.parametrize(("where", "key"), [("sae", "dummy"), ("vocab", "dummy"), ("data.sources.chat", "dummy"),
                                            ("trainer", "dummy"), ("logger", "dummy")])
def test_a_key_nothing_reads_is_found(compose, where, key):
    cfg = compose("train", ("logger=csv",))  # CSVLogger takes no **kwargs: logger.dummy is no argument of it
    with open_dict(cfg):
        OmegaConf.update(cfg, f"{where}.{key}", 1, force_add=True)
    assert unread_keys(OmegaConf.to_container(cfg, resolve=True)) == [f"{where}.{key}"]


def test_a_dummy_key_added_to_a_conf_file_fails(compose, tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    shutil.copytree(conf_dir(), conf)
    with (conf / "score" / "paper_v2.yaml").open("a") as f:
        f.write("dummy_setting: 3\n")
    monkeypatch.setenv("REASONING_SAE_CONF", str(conf))
    assert unread_keys(_composed(compose, "score", "paper_v2")) == ["score.dummy_setting"]


def _own_values(group: str, option: str) -> dict:
    """What conf/<group>/<option>.yaml sets itself, and what the options of its defaults list set before it."""
    values = OmegaConf.to_container(OmegaConf.load(conf_dir() / group / f"{option}.yaml"), resolve=False)
    inherited = {}
    for parent in values.pop("defaults", []):
        if parent != "_self_":
            inherited.update(_own_values(group, parent))
    return {**inherited, **values}


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in TYPED_GROUPS for o in options(g)])
def test_no_option_restates_a_dataclass_default(group, option):
    defaults = group_defaults(group)
    own = OmegaConf.to_container(OmegaConf.load(conf_dir() / group / f"{option}.yaml"), resolve=False)
    own.pop("defaults", None)
    assert set(own) <= set(defaults), f"conf/{group}/{option}.yaml sets keys {TYPED_GROUPS[group][1]} lacks"
    restated = sorted(k for k, v in own.items() if v == defaults[k])
    assert not restated, (f"conf/{group}/{option}.yaml restates the defaults of {restated}: remove them (the default "
                          f"lives in {TYPED_GROUPS[group][1]} alone)")


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in TYPED_GROUPS for o in options(g)])
def test_a_typed_group_is_its_dataclass_defaults_and_the_options_values(compose, group, option):
    # experiment=paper chooses the group's options and sets none of their values
    composed = _composed(compose, group, option, "experiment=paper")[group]
    assert composed == {**group_defaults(group), **_own_values(group, option)}
    if group == "model":  # load_lm(<name>) reads the same file, over the same defaults
        assert asdict(model_config(option)) == composed


@pytest.mark.parametrize("group", sorted(TYPED_GROUPS))
def test_a_groups_defaults_node_is_its_dataclass(group):
    defaults = group_defaults(group)
    assert asdict(typed_group(group)(**defaults)) == defaults
    assert [k for k, v in defaults.items() if v == "???"] == (["name"] if group == "model" else [])
