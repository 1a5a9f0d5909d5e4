"""The evaluation cells behind `evaluate/results.csv`: `evaluate-cells/<task>/<label>-<hash>/` directories.

Old cells of other configs stay in the cache beside the current ones, so a (task, label) is matched to the cell
whose metrics.json holds exactly the numbers results.csv reports (the newest such cell if several do)."""

import json
import math
from pathlib import Path

import pandas as pd

from reasoning_sae.figures.common import Artifacts


def cell_metrics(path: Path) -> dict:
    return json.loads((path / "metrics.json").read_text())


def same_numbers(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(math.isclose(float(a[k]), float(b[k]), rel_tol=1e-9, abs_tol=1e-12) for k in a)


def candidates(art: Artifacts, task: str, label: str) -> list[Path]:
    """Cell directories of this task and label, newest first."""
    found = [p.parent for p in (art.root / "evaluate-cells" / task).glob(f"{label}-*/metrics.json")
             if cell_metrics(p.parent).get("label") == label]
    return sorted(found, key=lambda p: (p / "metrics.json").stat().st_mtime, reverse=True)


def find_cell(art: Artifacts, long: pd.DataFrame, task: str, label: str) -> Path | None:
    """The cell whose metrics.json equals results.csv's numbers for (task, label); None if no cell does."""
    rows = long[(long["task"] == task) & (long["label"] == label)]
    reported = dict(zip(rows["metric"], rows["value"], strict=True))
    for path in candidates(art, task, label):
        if same_numbers(cell_metrics(path).get("metrics", {}).get(task, {}), reported):
            return path
    return None


def samples(cell: Path, task: str) -> list[dict]:
    """lm-eval's logged samples of a cell (the newest samples file of the task), by doc_id."""
    files = sorted((cell / "lm_eval").glob(f"**/samples_{task}_*.jsonl"), key=lambda p: p.stat().st_mtime)
    if not files:
        return []
    rows = [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]
    return sorted(rows, key=lambda r: r["doc_id"])
