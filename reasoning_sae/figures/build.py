"""Build every figure and table of one experiment into a directory: figures/, tables/, items.json, REPORT.md."""

import json
import re
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from reasoning_sae.figures import (autointerp_scores, diffing, examples, falsify, groups, interfaces, scores,
                                   steering, vocabulary)
from reasoning_sae.figures.common import Artifacts, Item, paper_run
from reasoning_sae.figures.report import render

# One function per paper figure or table (a few return several items: the interface panels, Tables 5-9), then the
# checks beyond the paper (token-injection falsification, scored explanations).
BUILDERS: tuple[Callable[[Artifacts, Path, DictConfig], Item | list[Item]], ...] = (
    vocabulary.fig2, interfaces.interfaces, groups.fig3b, diffing.fig4, vocabulary.fig5, scores.fig6,
    steering.table1, steering.table2, diffing.table3, groups.table4, examples.tables5_9, falsify.falsification,
    autointerp_scores.explanation_scores)
REQUIRED = {"vocab": "frequencies.parquet", "score": "scores.parquet", "interpret": "features.json",
            "evaluate": "results.csv"}


KINDS = ("Fig", "Table", "Beyond")  # the paper's figures, its tables, then what goes beyond the paper


def paper_order(item: Item) -> tuple:
    """Figures, then tables, then the checks beyond the paper; each by number and panel letter."""
    kind, number, panel = re.match(r"(Fig|Table|Beyond)\.? (\d+)(\w*)", item.label).groups()
    return (KINDS.index(kind), int(number), panel)


def build_all(art: Artifacts, out: Path, opts: DictConfig) -> list[Item]:
    """Render everything into `out`; a missing required artifact is a UserError naming the stage to run."""
    for stage, name in REQUIRED.items():
        art.path(stage, name)
    items: list[Item] = []
    for builder in BUILDERS:
        made = builder(art, out, opts)
        items += made if isinstance(made, list) else [made]
    items.sort(key=paper_order)
    (out / "items.json").write_text(json.dumps([i.to_dict() for i in items], indent=1, default=str) + "\n")
    run = paper_run(art, bool(opts.get("paper", False)))
    (out / "run.json").write_text(json.dumps(run._asdict(), indent=1) + "\n")
    (out / "REPORT.md").write_text(render(art, items, run))
    return items


def load_items(out: Path) -> list[Item]:
    return [Item(**d) for d in json.loads((out / "items.json").read_text())]
