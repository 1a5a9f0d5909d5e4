"""The evaluation grid: one cell per (task, steering or word ban). Cells are cached on their own, keyed by
everything that changes their result, so Hydra multirun jobs (one cell or a slice each) and the collecting run
share work: a cell computed by any job is never computed again."""

import hashlib
import json
from collections.abc import Sequence
from typing import NamedTuple

from reasoning_sae.errors import UserError


class Cell(NamedTuple):
    task: str
    features: tuple[int, ...] = ()  # () = no steering
    gamma: float | None = None
    ban: str | None = None          # None, "reason" (the vocabulary) or "random-<seed>"
    vector: str | None = None       # a steering vector in place of SAE features: "diffmean" (the score stage's)
    force: int | None = None        # budget forcing (s1): the minimum thinking length in tokens

    @property
    def label(self) -> str:
        if self.ban:
            return f"ban-{self.ban}"
        if self.vector:
            return f"{self.vector}_g{self.gamma:g}"
        if self.force is not None:
            return f"force-{self.force}"
        if not self.features:
            return "baseline"
        return f"f{'+'.join(map(str, self.features))}_g{self.gamma:g}"

    @property
    def row(self) -> str:
        """The row name in the results tables (the paper's first column)."""
        if self.ban:
            return {"reason": "Reason (ban R)"}.get(self.ban, f"Random ({self.ban})")
        if self.vector:
            return f"{VECTOR_ROWS.get(self.vector, self.vector)} γ={self.gamma:g}"
        if self.force is not None:
            return "Budget forcing"
        return "No steering" if not self.features else f"#{'+'.join(map(str, self.features))} γ={self.gamma:g}"


VECTOR_ROWS = {"diffmean": "DiffMean"}
# Fields added after the first cells were cached: left out of a cell's key while unset, so old cells keep theirs.
LATER_FIELDS = ("vector", "force")


def feature_sets(features: Sequence) -> list[tuple[int, ...]]:
    """Config features -> steering sets: an int is one feature, a list or `a+b` string several at once."""
    sets = []
    for entry in features:
        items = entry if isinstance(entry, Sequence) and not isinstance(entry, str) else str(entry).split("+")
        try:
            sets.append(tuple(int(i) for i in items))
        except ValueError as err:
            raise UserError(f"steering.features entry {entry!r} is not a feature id (or ids joined by '+')") from err
    return sets


def grid(tasks: Sequence[str], features: Sequence, gammas: Sequence[float], baseline: bool = True,
         ban_seeds: Sequence[int] | None = None, vectors: Sequence[str] = (), force: int | None = None) -> list[Cell]:
    """Baseline (optional) + features x gammas for every task, then the steering-vector cells (vectors x gammas)
    and budget forcing (minimum thinking length `force`) when asked for, then the word-ban cells."""
    cells = []
    for task in tasks:
        cells += [Cell(task)] if baseline else []
        cells += [Cell(task, f, float(g)) for f in feature_sets(features) for g in gammas]
        cells += [Cell(task, gamma=float(g), vector=v) for v in vectors for g in gammas]
        cells += [Cell(task, force=int(force))] if force is not None else []
        if ban_seeds is not None:
            cells += [Cell(task, ban="reason"), *(Cell(task, ban=f"random-{s}") for s in ban_seeds)]
    return list(dict.fromkeys(cells))


def cell_key(cell: Cell, context: dict) -> str:
    """`<label>-<hash>`: the hash covers the cell and `context` (model, SAE, f_max, generation settings...)."""
    fields = {k: v for k, v in cell._asdict().items() if v is not None or k not in LATER_FIELDS}
    blob = json.dumps({"cell": fields, **context}, sort_keys=True, default=str)
    return f"{cell.label}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"
