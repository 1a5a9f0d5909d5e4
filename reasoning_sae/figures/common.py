"""What the figure and table functions share: the artifacts they read, the Item each returns, and the writers.

Every function takes an `Artifacts` (one experiment's `artifacts/<experiment>/`), the output directory and the
figure options, writes `figures/<key>.{pdf,png}` or `tables/<key>.{md,tex}` there, and returns an `Item` that the
report and `verify` read (kept in `items.json`)."""

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import yaml

from reasoning_sae.artifacts import META, artifact, has_artifact, read_f_r, read_scores, read_top_features, sae_dir
from reasoning_sae.markdown import markdown_table

NOT_RUN = "not run"
PUBLISHED = ("figures", "tables")  # what the figures stage copies into paths.paper, beside REPORT.md
PAPER_PARTS = (*PUBLISHED, "REPORT.md")  # what paper/MANIFEST.sha256 covers (not expected/)


@dataclass
class Item:
    """One paper figure or table as built here: its files, our headline numbers, and why it was not built."""

    key: str                       # fig2, table1, ... (file stem)
    label: str                     # the paper's name: "Fig. 2", "Table 1"
    title: str
    files: list[str] = field(default_factory=list)   # relative to the output root
    status: str = "ok"             # ok | not run
    reason: str = ""               # for `not run`: what to run
    ours: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    markdown: str = ""             # a table's Markdown, embedded in the report

    def to_dict(self) -> dict:
        return asdict(self)


def not_run(key: str, label: str, title: str, reason: str) -> Item:
    return Item(key, label, title, status=NOT_RUN, reason=reason)


class Artifacts:
    """Read-only view of `artifacts/<experiment>/`: each stage's files, or a one-line UserError naming the stage."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    @property
    def experiment(self) -> str:
        return self.root.name

    def has(self, stage: str, name: str = "") -> bool:
        return has_artifact(self.root / stage, name)

    def path(self, stage: str, name: str = "") -> Path:
        return artifact(self.root, stage, name)

    def json(self, stage: str, name: str) -> Any:
        return json.loads(self.path(stage, name).read_text())

    def parquet(self, stage: str, name: str) -> pd.DataFrame:
        return pd.read_parquet(self.path(stage, name))

    def csv(self, stage: str, name: str, **kwargs) -> pd.DataFrame:
        return pd.read_csv(self.path(stage, name), keep_default_na=False, na_values=[""], **kwargs)

    def config(self, stage: str) -> dict:
        """The resolved config the stage ran with ({} when it wrote none)."""
        path = self.root / stage / "config.yaml"
        return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}

    def meta(self, stage: str) -> dict:
        path = self.root / stage / META
        return json.loads(path.read_text()) if path.is_file() else {}

    # The typed readers of artifacts.py, on this experiment.

    def top_features(self) -> dict:
        """The score stage's top_features.json (F_R, q, top_k, tau, the SAE's provenance)."""
        return read_top_features(self.root)

    def f_r(self) -> list[int]:
        """F_R, best first."""
        return read_f_r(self.root)

    def scores(self) -> pd.DataFrame:
        """The score stage's table, one row per feature."""
        return read_scores(self.root)

    def sae_dir(self) -> Path:
        """Where the train stage's SAE is."""
        return sae_dir(self.root)


def figure_style() -> None:
    """Agg backend, small fonts, no metadata dates (same inputs, same files)."""
    import logging

    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("fontTools").setLevel(logging.WARNING)  # PDF font subsetting logs every table at INFO
    matplotlib.rcParams.update({"font.size": 8, "axes.titlesize": 9, "axes.spines.top": False,
                                "axes.spines.right": False, "savefig.bbox": "tight", "pdf.fonttype": 42})


def save_figure(fig, out: Path, key: str, tight: bool = True) -> list[str]:
    """`figures/<key>.pdf` and `.png`; returns their paths relative to `out` (tight=False: keep the figure's own
    layout, which also saves a second layout pass on large figures)."""
    import matplotlib.pyplot as plt

    (out / "figures").mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing")  # rare corpus characters
        bbox = "tight" if tight else None
        fig.savefig(out / "figures" / f"{key}.pdf", metadata={"CreationDate": None, "ModDate": None}, bbox_inches=bbox)
        fig.savefig(out / "figures" / f"{key}.png", dpi=150, metadata={"Software": None}, bbox_inches=bbox)
    plt.close(fig)
    return [f"figures/{key}.pdf", f"figures/{key}.png"]


def fmt(value: Any, digits: int = 1) -> str:
    """A table cell: fixed decimals for numbers, '–' for missing, text as is."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", "<br>")


def markdown(frame: pd.DataFrame) -> str:
    """A pipe table of a frame of strings (first column: the row key), its cells and names escaped by md_cell."""
    return markdown_table(frame.map(md_cell).set_axis([md_cell(c) for c in frame.columns], axis=1))


def latex(frame: pd.DataFrame, caption: str, key: str, column_format: str | None = None) -> str:
    """A LaTeX table (booktabs) of a frame of strings."""
    tex = frame.to_latex(index=False, escape=True, caption=caption, label=f"tab:{key}", column_format=column_format)
    return tex.replace("γ", r"$\gamma$").replace("→", r"$\to$")


def write_table(frame: pd.DataFrame, out: Path, key: str, caption: str, note: str = "",
                column_format: str | None = None) -> tuple[list[str], str]:
    """`tables/<key>.md` (caption, note, table) and `tables/<key>.tex`; returns (files, the Markdown table)."""
    (out / "tables").mkdir(parents=True, exist_ok=True)
    table = markdown(frame)
    (out / "tables" / f"{key}.md").write_text(f"**{caption}**\n\n" + (f"{note}\n\n" if note else "") + table)
    (out / "tables" / f"{key}.tex").write_text(latex(frame, caption, key, column_format))
    return [f"tables/{key}.md", f"tables/{key}.tex"], table


def write_data(out: Path, key: str, data: Any) -> str:
    """The numbers a figure draws, as `figures/<key>.json` (verify compares them with the artifacts)."""
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "figures" / f"{key}.json").write_text(json.dumps(data, indent=1, default=float) + "\n")
    return f"figures/{key}.json"


def parse_markdown_table(text: str) -> pd.DataFrame:
    """The first pipe table of a Markdown text, as strings (the inverse of `markdown`)."""
    import re

    import itertools

    lines = list(itertools.dropwhile(lambda line: not line.startswith("|"), text.splitlines()))
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), lines))  # up to the table's end
    if len(rows) < 2:
        raise ValueError("no Markdown table")

    def cells(line: str) -> list[str]:
        parts = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        return [p.strip().replace("\\|", "|").replace("<br>", "\n") for p in parts]

    header, body = cells(rows[0]), [cells(r) for r in rows[2:]]
    return pd.DataFrame(body, columns=header)


PAPER_MODEL_ID = "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"


class PaperRun(NamedTuple):
    """How a run's numbers relate to the paper's (written as run.json beside the figures, read by verify)."""

    paper_experiment: bool
    """The run is a paper experiment (figures.paper): the paper's configuration."""
    miniature: bool
    """A paper experiment on another model at small sizes: every stage runs, no number is comparable."""
    compare: bool
    """Compare with the paper's numbers (a paper experiment on the paper's model)."""
    feature_ids: bool
    """Compare feature by feature: the SAE is the authors' release, whose ids the paper names."""
    model: str
    """The model the run used."""
    sae: dict
    """The run SAE's provenance (score stage)."""


def paper_run(art: "Artifacts", paper_experiment: bool) -> PaperRun:
    from reasoning_sae.sae.source import SAESource

    model = art.config("score").get("model", {}).get("name", "unknown")
    sae = art.top_features().get("sae", {"kind": "train"}) if art.has("score") else {}
    source = SAESource(**{k: sae.get(k) for k in ("kind", "path", "repo_id", "subfolder", "release", "sae_id")
                          if sae.get(k) is not None})
    compare = paper_experiment and model == PAPER_MODEL_ID
    return PaperRun(paper_experiment, paper_experiment and not compare, compare,
                    compare and source.is_paper_release(), model, sae)


def load_paper_run(built: Path) -> PaperRun | None:
    path = built / "run.json"
    return PaperRun(**json.loads(path.read_text())) if path.is_file() else None
