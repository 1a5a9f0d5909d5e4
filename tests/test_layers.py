"""DESIGN.md's layers: a stage imports lower layers and `artifacts`, never another stage or the CLI; nothing below
the stages imports a stage or the CLI; the ground imports only the ground. Checked on the source (every import
statement, function-level ones included, and import_module calls with a literal name), so a violation fails here even
on a path no other test runs."""

import ast
from pathlib import Path

import pytest

import reasoning_sae

PACKAGE = Path(reasoning_sae.__file__).parent
STAGES_PKG, CLI = "reasoning_sae.stages", "reasoning_sae.cli"
# What the stages package itself holds besides its stage modules (importable from anywhere).
STAGE_CONSTANTS = {"STAGES", "OPTIONAL"}
# Above the CLI: `python -m reasoning_sae` runs it.
ENTRY_POINTS = {"reasoning_sae.__main__"}
# The ground floor (README "Layout"): imports only the standard library, third-party packages and the ground.
GROUND = {f"reasoning_sae.{name}" for name in ("errors", "settings", "publish", "manifest", "lazy", "markdown", "seeding")}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of everything `path` imports: `from a import b` gives `a.b` (b may be a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def stage_of(dotted: str) -> str | None:
    """The stage module `dotted` names or lies in (None: not a stage; the package constants are not one)."""
    if dotted == STAGES_PKG or not dotted.startswith(STAGES_PKG + "."):
        return None
    first = dotted[len(STAGES_PKG) + 1 :].split(".")[0]
    return None if first in STAGE_CONSTANTS else f"{STAGES_PKG}.{first}"


def violations(path: Path) -> list[str]:
    name = module_name(path)
    if name in ENTRY_POINTS or name == CLI:
        return []
    own_stage = stage_of(name)
    bad = []
    for line, dotted in imported(path):
        where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {dotted}"
        if dotted == CLI or dotted.startswith(CLI + "."):
            bad.append(f"{where}: only the entry point imports the CLI")
        elif (target := stage_of(dotted)) and target != own_stage:
            kind = "another stage" if own_stage else "a stage"
            bad.append(f"{where}: {kind} (move what it needs into a lower layer or artifacts.py)")
    return bad


def ground_violations(path: Path) -> list[str]:
    """What a ground module imports from the package above the ground."""
    return [f"{path.relative_to(PACKAGE.parent)}:{line} imports {dotted}: the ground imports only the ground"
            for line, dotted in imported(path) if dotted.split(".")[0] == "reasoning_sae"
            and not any(dotted == g or dotted.startswith(g + ".") for g in GROUND)]


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_package_has_stages_to_check():
    names = {module_name(p) for p in MODULES}
    assert {CLI, f"{STAGES_PKG}.corpus", f"{STAGES_PKG}.figures", "reasoning_sae.artifacts"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_stage_or_the_cli_against_the_layers(path):
    assert not violations(path), "\n".join(violations(path))


@pytest.mark.parametrize("source, expected", [
    ("from reasoning_sae.stages.corpus import source_configs", "a stage"),
    ("def f():\n    from reasoning_sae.stages import train\n", "a stage"),
    ("import reasoning_sae.stages.score as s", "a stage"),
    ("def f():\n    from reasoning_sae.cli import check_group_choices\n", "the CLI"),
    ("import importlib\nimportlib.import_module('reasoning_sae.stages.diff')", "a stage"),
    ("from reasoning_sae.stages import OPTIONAL, STAGES", None),
    ("from reasoning_sae.artifacts import read_f_r", None),
], ids=range(7))
def test_the_check_catches_upward_imports(tmp_path, monkeypatch, source, expected):
    fake = tmp_path / "reasoning_sae" / "figures" / "fake.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(source)
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path / "reasoning_sae")
    found = violations(fake)
    assert (expected in found[0]) if expected else not found, found


@pytest.mark.parametrize("source, bad", [
    ("from reasoning_sae.stages.corpus import source_configs", True),
    ("from . import interpret", True),
    ("from .score import build", True),
    ("from reasoning_sae.stages.autointerp import CONFIG_KEYS", False),  # its own module
    ("from reasoning_sae.artifacts import read_f_r", False),
], ids=range(5))
def test_a_stage_importing_another_stage_is_caught(tmp_path, monkeypatch, source, bad):
    fake = tmp_path / "reasoning_sae" / "stages" / "autointerp.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(source)
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path / "reasoning_sae")
    found = violations(fake)
    assert bool(found) == bad and all("another stage" in f for f in found), found


@pytest.mark.parametrize("name", sorted(GROUND))
def test_the_ground_imports_only_the_ground(name):
    path = PACKAGE / f"{name.split('.')[-1]}.py"
    assert path.is_file() and not ground_violations(path), ground_violations(path)


@pytest.mark.parametrize("source, bad", [
    ("import pandas as pd\nfrom reasoning_sae.errors import UserError", False),
    ("from reasoning_sae.artifacts import write_json", True),
    ("def f():\n    from reasoning_sae import config_check\n", True),
], ids=range(3))
def test_a_ground_module_importing_above_the_ground_is_caught(tmp_path, monkeypatch, source, bad):
    fake = tmp_path / "reasoning_sae" / "markdown.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(source)
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path / "reasoning_sae")
    assert bool(ground_violations(fake)) == bad
