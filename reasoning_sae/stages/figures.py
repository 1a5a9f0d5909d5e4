"""The `figures` stage: every figure and table of the paper, and `REPORT.md`, from the artifacts of the earlier stages.

Builds `figures/` (PDF and PNG, with the plotted numbers as JSON), `tables/` (Markdown and LaTeX), `items.json` and
`REPORT.md` into `artifacts/<experiment>/figures/`, then copies figures/, tables/ and REPORT.md into `paths.paper` with their sha256 manifest.
Reads vocab, score, interpret and evaluate (required) and autointerp and diff (optional: "not run" when absent)."""

import logging
import os
import shutil
from pathlib import Path

from omegaconf import DictConfig

from reasoning_sae.artifacts import atomic_dir, path_fingerprint, run_stage, stage_dir, upstream_inputs
from reasoning_sae.figures.build import REQUIRED, build_all
from reasoning_sae.figures.common import NOT_RUN, PAPER_PARTS, PUBLISHED, Artifacts
from reasoning_sae.manifest import write_manifest

log = logging.getLogger(__name__)
CONFIG_KEYS = ("figures",)
OPTIONAL_INPUTS = ("train", "autointerp", "diff", "falsify", "evaluate-cells")


def inputs(cfg: DictConfig) -> dict[str, str]:
    found = upstream_inputs(cfg, REQUIRED)
    return {**found, **{stage: path_fingerprint(stage_dir(cfg, stage)) for stage in OPTIONAL_INPUTS}}


def build(cfg: DictConfig, out: Path) -> dict:
    items = build_all(Artifacts(stage_dir(cfg, "figures").parent), out, cfg.figures)
    return {"built": [i.key for i in items if i.status != NOT_RUN],
            "not_run": {i.key: i.reason for i in items if i.status == NOT_RUN}}


def publish(built: Path, paper: Path) -> None:
    """Replace `paper`/figures, /tables and REPORT.md with the built ones (paper/expected and the rest stay)."""
    paper.mkdir(parents=True, exist_ok=True)
    for name in PUBLISHED:
        with atomic_dir(paper / name) as tmp:
            if (built / name).is_dir():
                shutil.copytree(built / name, tmp, dirs_exist_ok=True)
    tmp_report = paper / f".REPORT.md.tmp-{os.getpid()}"
    shutil.copyfile(built / "REPORT.md", tmp_report)
    tmp_report.replace(paper / "REPORT.md")
    write_manifest(paper, PAPER_PARTS)
    log.info("figures: published to %s", paper)


def run(cfg: DictConfig) -> Path:
    out = run_stage(cfg, "figures", CONFIG_KEYS, inputs(cfg), lambda tmp: build(cfg, tmp))
    if cfg.figures.publish:
        publish(out, Path(cfg.paths.paper))
    return out
