"""The training-metrics log of a run that may be killed and resumed, each step's row once and in order.

Lightning's CSV logger starts its file afresh on every fit, so a resumed run would lose the rows written before the
kill. Before a resumed fit the rows so far are set aside as a numbered segment; the final log joins the segments in
order, and a later segment, which replays from its checkpoint, replaces the rows of the steps it covers (the rows a
killed run wrote after its last checkpoint). Resuming is exact, so those rows are the same numbers again."""

import csv
import shutil
from pathlib import Path

SEGMENTS = "log-segments"


def set_aside(current: Path, segments: Path, resume: bool) -> None:
    """Before a fit: keep `current` (the logger's file) as the next segment when resuming; a fresh start drops the
    segments of an earlier run (Lightning empties `current` itself)."""
    if not resume:
        shutil.rmtree(segments, ignore_errors=True)
        return
    if current.is_file():
        segments.mkdir(parents=True, exist_ok=True)
        current.rename(segments / f"{len(list(segments.glob('*.csv'))):04d}.csv")


def _step(row: dict) -> int:
    try:
        return int(float(row.get("step") or -1))
    except ValueError:
        return -1


def _read(path: Path) -> tuple[list[str], dict[int, dict]]:
    """The columns and the rows of one CSV, by step (rows sharing a step are one row)."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows: dict[int, dict] = {}
        for row in reader:
            rows.setdefault(_step(row), {}).update({k: v for k, v in row.items() if v not in (None, "")})
        return list(reader.fieldnames or []), rows


def merge(paths: list[Path]) -> tuple[list[str], list[dict]]:
    """The columns and rows of CSV segments written one after another, each step once, in step order."""
    columns: set[str] = set()
    rows: dict[int, dict] = {}
    for path in paths:
        names, seg = _read(path)
        columns.update(names)
        if seg:
            first = min(seg)
            rows = {step: row for step, row in rows.items() if step < first} | seg
    return sorted(columns), [rows[step] for step in sorted(rows)]


def write_merged(current: Path, segments: Path, out: Path) -> bool:
    """The whole run's log into `out` (False, and nothing written, when this fit logged no CSV)."""
    if not current.is_file():
        return False
    columns, rows = merge([*sorted(segments.glob("*.csv")), current])
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(out)
    return True
