"""The paper's published numbers, kept as YAML under `paper/expected/` (one file per figure or table).

`load_expected("table1")` returns the parsed file; `list_expected()` the available names. The file format
(quantities, tables, tolerances) is described in `paper/expected/README.md`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from reasoning_sae.errors import UserError

EXPECTED_DIR = Path(__file__).resolve().parents[1] / "paper" / "expected"


def list_expected() -> list[str]:
    """Names (file stems) of the paper figures and tables with expected numbers, sorted."""
    return sorted(p.stem for p in EXPECTED_DIR.glob("*.yaml"))


def load_expected(name: str) -> dict[str, Any]:
    """The paper's numbers for one figure or table, e.g. `load_expected("table1")["table"]["rows"]`."""
    path = EXPECTED_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(list_expected()) or f"none (is {EXPECTED_DIR} missing?)"
        raise UserError(f"no expected paper numbers named {name!r}; use one of: {known}")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def table_records(table: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of an expected-numbers table as dicts keyed by column name."""
    return [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]
